"""argparse types for the numbers the command line and the training entry take: a value out of range is an error
naming the option before anything runs (``--tolerance 5`` would otherwise pass a run 157% off)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def _number(kind: type, text: str) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = int(_number(int, text))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    value = int(_number(int, text))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(_number(float, text))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    value = float(_number(float, text))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def fraction(text: str) -> float:
    """A relative tolerance: strictly between 0 and 1 (0.05 is 5%)."""
    value = float(_number(float, text))
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"is relative (0.05 = 5%) and must be between 0 and 1, got {text}")
    return value


def variant_log(text: str) -> tuple[str, Path]:
    """``VARIANT=PATH``: a recorded log and the fault variant it was trained as."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected VARIANT=PATH, got {text!r}")
    return name, Path(path)
