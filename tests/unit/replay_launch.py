"""A pytest plugin for the suite's end-to-end tests of a live run on a CPU (``-p replay_launch``): the launcher
starts the recorded-log replay (replay_nemo.py, with the arguments in $QA_REPLAY) where it would start torchrun,
so the plugin's whole live path runs, with real processes."""

import os
import shlex
import sys
from pathlib import Path

from qwen_acceptance.run import plan


def _replay_command(*_args: object, **_kwargs: object) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name("replay_nemo.py")), *shlex.split(os.environ["QA_REPLAY"])]


plan.command = _replay_command
