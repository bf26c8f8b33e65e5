"""YAML in and out for the matrix and the baselines: errors name the file and line, writes are atomic."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from qwen_acceptance.errors import AcceptanceError


def _round_trip() -> YAML:
    yaml = YAML(typ="rt")  # keeps comments, key order and layout when a file is written back
    yaml.preserve_quotes = True
    yaml.width = 120
    # Write None as `null`, as the files are written by hand: ruamel's default (nothing) would rewrite every
    # untouched `key: null` of a file it updates.
    yaml.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    return yaml


def load(path: Path) -> Any:
    """Parse ``path``; a syntax error names the file and line, a missing file says so."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AcceptanceError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AcceptanceError(f"{path}: cannot read: {exc}") from None
    return load_text(text, path)


def load_text(text: str, path: Path) -> Any:
    """Parse YAML text that came from (or is bound for) ``path``, which the errors name."""
    try:
        return _round_trip().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark else ""
        raise AcceptanceError(f"{path}{where}: invalid YAML: {exc.problem or exc.context}") from None
    except YAMLError as exc:
        raise AcceptanceError(f"{path}: invalid YAML: {exc}") from None


def dump(data: Any) -> str:
    buffer = io.StringIO()
    _round_trip().dump(data, buffer)
    return buffer.getvalue()


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename: a crash leaves the old file whole, never half a new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
