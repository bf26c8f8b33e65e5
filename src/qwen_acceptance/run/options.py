"""The options that describe a run, one table each for the command line (argparse) and the pytest plugin (its
addoption takes the same keywords), and the spec they ask for: an acceptance run may change its layout and GPUs,
never what the reference fixes (that takes ``--probe``, whose log says so)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from qwen_acceptance import argtypes, models
from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge.conformance import reference_changes
from qwen_acceptance.run import recipes
from qwen_acceptance.run.monitor import Limits
from qwen_acceptance.run.plan import DataChoice

# A live run's options (where data and runs live, when to give up), for argparse and pytest's addoption alike.
LIVE_OPTIONS: tuple[tuple[str, dict], ...] = (
    ("--runs-dir", {"type": Path, "default": Path("runs"), "help": "run folders go here (default: ./runs)"}),
    ("--data-prefix", {"type": Path, "help": "a prepared dataset (PREFIX.bin/.idx) instead of the model's corpus"}),
    ("--corpus", {"help": "another corpus than models.yaml's (a path or hf://datasets/REPO/FILE)"}),
    ("--tokenizer", {"help": "another tokenizer than models.yaml's (a directory, a hub id, bundled:qwen3)"}),
    (
        "--data-cache",
        {"type": Path, "help": "preprocessed datasets (default: $QWEN_ACCEPTANCE_CACHE or ~/.cache/qwen-acceptance)"},
    ),
    (
        "--te",
        {"choices": recipes.TE_CHOICES, "default": "auto", "help": "Transformer Engine: auto uses it when it imports"},
    ),
    (
        "--attention",
        {
            "choices": recipes.ATTENTION_CHOICES,
            "default": "auto",
            "help": "core attention: auto takes TE's where TE is used, else PyTorch SDPA",
        },
    ),
    (
        "--startup-timeout",
        {"type": argtypes.positive_float, "default": 1800.0, "help": "seconds allowed to the first step"},
    ),
    (
        "--hang-timeout",
        {"type": argtypes.positive_float, "default": 600.0, "help": "seconds allowed without a new step"},
    ),
    ("--time-limit", {"type": argtypes.positive_float, "help": "wall-clock seconds for a whole run (default: none)"}),
)


def data_choice(options: object) -> DataChoice:
    """The data options out of an argparse namespace or pytest's option namespace."""
    return DataChoice(
        options.data_prefix,
        options.corpus,
        options.tokenizer,
        options.data_cache,
    )


def limits_from(options: object) -> Limits:
    """The stop limits out of an argparse namespace or pytest's option namespace."""
    return Limits(options.startup_timeout, options.hang_timeout, options.time_limit)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that change a run, shared by `train`, `qwen-acceptance launch` and the pytest plugin."""
    parser.add_argument("--models", type=Path, help="model matrix YAML (default: the packaged one)")
    parser.add_argument("--gpus", type=argtypes.positive_int, help="GPUs for this run (never below the reference's)")
    parser.add_argument("--layout", help="parallel layout, e.g. tp=2,pp=1,cp=1,ep=1,sp=true")
    parser.add_argument("--seed", type=argtypes.nonnegative_int, help="another seed (noise measurements only)")
    parser.add_argument(
        "--max-steps", type=argtypes.positive_int, help="fewer or more steps (probes only; the reference is 1000)"
    )
    parser.add_argument("--global-batch-size", type=argtypes.positive_int, help="another global batch (probes only)")
    parser.add_argument("--micro-batch-size", type=argtypes.positive_int)
    parser.add_argument("--warmup-steps", type=argtypes.nonnegative_int, help="another LR warm-up (short probes)")
    parser.add_argument("--lr", type=argtypes.positive_float, help="another peak learning rate (probes only)")
    parser.add_argument("--min-lr", type=argtypes.nonnegative_float, help="another final learning rate (probes only)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="DOTTED.PATH=VALUE",
        help="set a recipe value, e.g. model.config.recompute_granularity=full (repeatable; "
        "VALUE takes the type of the value it replaces)",
    )
    parser.add_argument(
        "--probe", action="store_true", help="a throughput probe: fewer GPUs than the reference are allowed"
    )


def spec_from_args(model: str, args: argparse.Namespace) -> models.ModelSpec:
    """The run the options ask for; an acceptance run may change the layout and GPUs (checked by the matrix's
    rules), never what the reference fixes: that takes ``--probe``, whose log says so and never becomes a
    baseline."""
    reference = models.get_model(model, args.models)
    changes: dict[str, Any] = {}
    if args.gpus is not None:
        changes["gpus"] = args.gpus
    if args.layout:
        changes["layout"] = models.parse_layout(args.layout, reference.layout)
    for name in ("seed", "max_steps", "global_batch_size", "micro_batch_size"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    lr = {
        field: value
        for field, value in (("max", args.lr), ("min", args.min_lr), ("warmup_steps", args.warmup_steps))
        if value is not None
    }
    if lr:
        changes["lr"] = replace(reference.lr, **lr)
    if args.override:
        changes["overrides"] = {**reference.overrides, **parse_overrides(args.override)}
    if not changes and not args.probe:
        return reference
    spec = reference.with_changes(probe=args.probe, **changes)
    fixed = reference_changes(reference, spec)
    if fixed and not spec.probe:
        raise AcceptanceError(
            f"{model}: {'; '.join(fixed)}: the reference fixes these for an acceptance run (a "
            "probe may change them: --probe, never a baseline)"
        )
    return spec


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``DOTTED.PATH=VALUE`` items, VALUE read as YAML here and typed against the recipe by ``recipes.build``."""
    import yaml

    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or " " in key:
            raise AcceptanceError(f"--override {item!r}: expected DOTTED.PATH=VALUE")
        parsed[key] = yaml.safe_load(value)
    return parsed
