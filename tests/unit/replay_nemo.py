"""A stand-in training process for launcher tests: prints a recorded NeMo log line by line, as torchrun's rank 0
would, then behaves as asked (exit code, hang, spawn a grandchild that must not survive); ``--scale-loss`` derives
a broken run from the recorded one (nemolog.scale_loss), ``--lr`` the learning rate a variant's run prints."""

import argparse
import math
import subprocess
import sys
import time

from nemolog import scale_loss, with_loss, with_schedule

from qwen_acceptance.models import LRSchedule

parser = argparse.ArgumentParser()
parser.add_argument("log")
parser.add_argument("--step-delay", type=float, default=0.0)
parser.add_argument("--stop-after-step", type=int)
parser.add_argument("--nan-at-step", type=int)
parser.add_argument("--then-sleep", type=float, default=0.0)
parser.add_argument("--exit-code", type=int, default=0)
parser.add_argument("--grandchild-pidfile")
parser.add_argument("--scale-loss", type=float, help="multiply the loss of steps --scale-from..--scale-until")
parser.add_argument("--scale-from", type=int, default=0)
parser.add_argument("--scale-until", type=int)
parser.add_argument("--lr", nargs=3, type=float, metavar=("MAX", "MIN", "WARMUP"), help="print this schedule's lr")
args = parser.parse_args()

if args.grandchild_pidfile:  # like a rank torchrun starts: it must die with the group
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(args.grandchild_pidfile, "w") as handle:
        handle.write(str(child.pid))
step = -1
with open(args.log, encoding="utf-8") as handle:
    lines = handle.readlines()
if args.scale_loss is not None:
    lines = scale_loss(lines, args.scale_loss, args.scale_from, args.scale_until)
if args.lr is not None:
    lines = with_schedule(lines, LRSchedule(args.lr[0], args.lr[1], int(args.lr[2])))
for line in lines:
    if line.startswith("Training epoch"):
        step += 1
        if args.stop_after_step is not None and step > args.stop_after_step:
            break
        if step == args.nan_at_step:
            line = with_loss(line, math.nan)
        time.sleep(args.step_delay)
    print(line, end="", flush=True)
time.sleep(args.then_sleep)
if args.exit_code:
    print("Traceback (most recent call last):\nRuntimeError: CUDA error: an illegal memory access", flush=True)
sys.exit(args.exit_code)
