#!/usr/bin/env bash
# Create the virtual environment and install the suite with everything its tests need, from scratch.
# Usage: bash scripts/setup-venv.sh            (VENV=path to put it elsewhere than .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" -U pip wheel
# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build (the CPU wheel is what CI uses).
"${pip[@]}" -c .ci/constraints.txt torch
# NeMo 2.5 on a CPU machine needs the pins in .ci/constraints.txt (why: the comments there).
"${pip[@]}" -c .ci/constraints.txt -e '.[nemo,test]'
"$venv/bin/python" -c 'import qwen_acceptance, torch; print("installed qwen-acceptance", qwen_acceptance.__version__, "torch", torch.__version__)'
