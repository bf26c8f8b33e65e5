"""Whether a process the launcher should have ended is still running (a zombie counts as ended)."""

import os


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(")")[1].split()[0] != "Z"
