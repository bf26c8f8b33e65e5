"""The `qwen-acceptance` command: the same library the pytest plugin uses, for scripts and quick looks.

Exit codes: 0 pass, 1 fail, 2 bad input (a one-line error names the file, line or field), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from qwen_acceptance import argtypes, models, yamlio
from qwen_acceptance.data import preprocess, sources
from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.judge import baselines, logparse, metrics, verdict
from qwen_acceptance.perf import probe
from qwen_acceptance.run import plan, recipes, topology
from qwen_acceptance.run.monitor import Outcome
from qwen_acceptance.run.options import LIVE_OPTIONS, add_run_arguments, data_choice, limits_from, spec_from_args

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _print_json(data: dict) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def _model_or_none(name: str | None, models_file: Path | None) -> models.ModelSpec | None:
    return models.get_model(name, models_file) if name else None


def cmd_summarize(args: argparse.Namespace) -> int:
    spec = _model_or_none(args.model, args.models)
    log = logparse.parse_file(args.log)
    summary = metrics.summarize(
        log,
        seq_length=args.seq_length or (spec.seq_length if spec else None),
        gpus=args.gpus or (spec.gpus if spec else None),
    )
    if args.json:
        _print_json(summary.to_json())
        return EXIT_PASS
    print(f"log:        {summary.source}")
    print(
        f"steps:      {summary.steps_read} read, last step {summary.last_step} "
        f"(the run planned {summary.planned_last_step}); {summary.unreadable_lines} unreadable lines, "
        f"{summary.repeated_steps} repeated steps{', last line truncated' if summary.truncated_last_line else ''}"
    )
    print(f"final loss: {summary.final_loss} at global_step {summary.last_step}")
    if summary.non_finite_loss_steps:
        print(f"NaN/inf:    loss not finite at steps {summary.non_finite_loss_steps[:10]}")
    tp = summary.throughput
    if tp:
        how = " (derived from step time)" if tp.derived else ""
        print(
            f"throughput: {tp.mean:.4g} tokens/s/GPU{how}, mean of steps {tp.first_step}..{tp.last_step} "
            f"({tp.steps_used} steps, first and last {tp.trim} dropped); median {tp.median:.4g}, "
            f"stdev {tp.stdev:.3g}, min {tp.minimum:.4g}, max {tp.maximum:.4g}"
        )
    else:
        print(f"throughput: unavailable: {summary.throughput_error}")
    if summary.gpu_name:
        print(f"GPU:        {summary.gpu_name}")
    return EXIT_PASS


def _resolve_baseline(args: argparse.Namespace, spec: models.ModelSpec | None) -> tuple[float, float]:
    if args.baseline_loss is not None:
        return args.baseline_loss, baselines.DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    assert spec is not None
    entry = baselines.require(baselines.load(args.baselines), spec.name, args.baselines)
    return entry.final_loss, entry.tolerance if args.tolerance is None else args.tolerance


def cmd_check(args: argparse.Namespace) -> int:
    spec = _model_or_none(args.model, args.models)
    baseline_loss, tolerance = _resolve_baseline(args, spec)
    log = logparse.parse_file(args.log)
    log.require_steps()
    if args.final_step is not None:
        final_step, why = args.final_step, "--final-step"
    elif spec is not None:
        final_step, why = spec.final_step, f"{spec.name}: max_steps {spec.max_steps}"
    else:
        final_step, why = log.planned_last_step, "the log's 'iteration I/N'"
    result = verdict.judge(log, final_step=final_step, baseline_loss=baseline_loss, tolerance=tolerance)
    if args.json:
        _print_json({**result.to_json(), "final_step_from": why})
    else:
        print(f"log: {result.source} (final step {final_step}, from {why})")
        for check in result.checks:
            print(f"  {'ok  ' if check.passed else 'FAIL'} {check.name}: {check.detail}")
        print("PASS" if result.passed else "FAIL")
    return EXIT_PASS if result.passed else EXIT_FAIL


def cmd_preprocess(args: argparse.Namespace) -> int:
    options = preprocess.Options(
        input=sources.resolve_input(args.input),
        output_prefix=Path(args.output_prefix),
        tokenizer=args.tokenizer_type,
        json_keys=tuple(args.json_keys),
        workers=args.workers,
        append_eod=args.append_eod,
        skip_invalid=args.skip_invalid,
        progress=not args.no_progress,
        encoder=args.encoder,
    )
    cpus = os.cpu_count() or 1
    if options.workers > cpus:
        print(
            f"qwen-acceptance: warning: --workers {options.workers} on a machine with {cpus} CPUs: each worker "
            "holds a tokenizer (about 170 MB) and more workers than CPUs add memory, not speed",
            file=sys.stderr,
        )
    report = preprocess.build(options)
    for key, stem in report.outputs.items():
        print(f"wrote {stem}.bin and {stem}.idx ({key})")
    print(report.summary())
    return EXIT_PASS


def _prepare(spec: models.ModelSpec, args: argparse.Namespace, *, prepare_data: bool = True) -> plan.Plan:
    """The run's plan; for a real run, after checking that this node has its GPUs (before any preprocessing)."""
    if prepare_data:
        topology.require_gpus(spec, topology.topology_from_env(spec))
    return plan.prepare(
        spec,
        runs_dir=args.runs_dir,
        data=data_choice(args),
        models_file=args.models,
        te=args.te,
        attention=args.attention,
        prepare_data=prepare_data,
    )


def _execute(the_plan: plan.Plan, args: argparse.Namespace) -> Outcome | None:
    """The run under the monitor with the live line on stderr; None (said on stderr) when it did not end well."""
    outcome = plan.execute(the_plan, limits=limits_from(args), progress=sys.stderr)
    if not outcome.ok:
        print(f"qwen-acceptance: {the_plan.spec.name}: {outcome.failure()}", file=sys.stderr)
        return None
    return outcome


def cmd_launch(args: argparse.Namespace) -> int:
    spec = spec_from_args(args.model, args)
    if args.override and not args.dry_run:  # a dry run builds the recipe anyway
        recipes.check_overrides(spec)
    the_plan = _prepare(spec, args, prepare_data=not args.dry_run)
    if args.dry_run:
        print(yamlio.dump(plan.describe(the_plan, args.te, args.attention)), end="")
        return EXIT_PASS
    outcome = _execute(the_plan, args)
    if outcome is None:
        return EXIT_FAIL
    log, last = outcome.log, outcome.log.last_step
    try:
        speed = f"{metrics.run_throughput(log, spec).mean:,.0f} tokens/s/GPU"
    except AcceptanceError as exc:
        speed = f"throughput unavailable ({exc})"
    loss = log.steps[last].get(logparse.LOSS) if last is not None else None
    print(f"{spec.name}: finished; log {outcome.log_path}; last step {last}, final loss {loss}, {speed}")
    return EXIT_PASS if last == spec.final_step else EXIT_FAIL


def cmd_bench(args: argparse.Namespace) -> int:
    """A short real run of the full model through the launcher; throughput, step time, peak memory and MFU."""
    args.probe = True
    base = spec_from_args(args.model, args)
    spec = base.with_changes(
        probe=True,
        max_steps=args.steps,
        lr=replace(base.lr, warmup_steps=min(base.lr.warmup_steps, args.steps // 4)),
        # No validation; Lightning also wants the interval within one epoch of batches.
        overrides={**base.overrides, "trainer.limit_val_batches": 0, "trainer.val_check_interval": args.steps},
    )
    if args.override:
        recipes.check_overrides(spec)
    outcome = _execute(_prepare(spec, args), args)
    if outcome is None:
        return EXIT_FAIL
    result = probe.result(spec, outcome.log, outcome.log_path)
    if args.json:
        _print_json(result)
    else:
        mfu = "—" if result["mfu"] is None else f"{result['mfu']:.1%}"
        print(
            f"{spec.name} on {spec.gpus} × {result['gpu']}, {result['layout']}, global batch {spec.global_batch_size}"
            f" (micro {spec.micro_batch_size}), seq {spec.seq_length}: {result['tokens_per_sec_per_gpu']:,.0f} "
            f"tokens/s/GPU over steps {result['window'][0]}..{result['window'][1]}, step {result['step_time_s']:.3f} s,"
            f" peak memory {result['peak_memory_gib']} GiB, MFU {mfu}; log {outcome.log_path}"
        )
    return EXIT_PASS


def cmd_sensitivity(args: argparse.Namespace) -> int:
    """The fault matrix: every variant trained through the launcher and judged with the suite's checks."""
    from qwen_acceptance.sensitivity import faults, table

    base = models.get_model(args.model, args.models)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = args.out or args.runs_dir / "sensitivity" / f"{base.name}-{stamp}"
    if args.from_logs:
        if args.faults or args.lr_scale or args.bisect_lr is not None:
            raise AcceptanceError(
                "sensitivity: --from-logs judges the logs it names; --faults, --lr-scale and --bisect-lr train"
            )
        names = [name for name, _ in args.from_logs]
        if repeated := sorted({n for n in names if names.count(n) > 1}):
            raise AcceptanceError(f"sensitivity: --from-logs names {', '.join(repeated)} more than once")
        logs = [(faults.named(name, args.catalogue), path) for name, path in args.from_logs]
        rows = table.tabulate_logs(base, logs, out, args.baselines, shared=args.jobs > 1)
        return _print_table(base.name, rows, out)
    if args.bisect_lr is not None and (args.faults or args.lr_scale):
        raise AcceptanceError("sensitivity: --bisect-lr chooses its own multipliers; drop --faults and --lr-scale")
    variants = [] if args.bisect_lr is not None else faults.select(args.faults, args.lr_scale, args.catalogue)
    needs = min((v.spec(base).gpus for v in variants), default=base.gpus)
    if (here := topology.visible_gpus()) < needs:  # a table of skipped rows would prove nothing
        raise AcceptanceError(
            f"sensitivity: the variants asked for train on {needs} GPU(s) or more and nvidia-smi sees {here} "
            "(--from-logs judges recorded logs without any)"
        )
    setup = table.Setup(
        runs_dir=args.runs_dir,
        data=data_choice(args),
        baselines_path=args.baselines,
        limits=limits_from(args),
        models_file=args.models,
        te=args.te,
        attention=args.attention,
        jobs=args.jobs,
    )
    if args.bisect_lr is not None:
        from qwen_acceptance.sensitivity import bisect

        sides = bisect.run(base, out, setup, rounds=args.bisect_lr, visible_gpus=here)
        print(bisect.markdown(base.name, sides), end="")
        print(f"bisection and each round's table and logs: {out}")
        return EXIT_PASS if all(s.fails is not None for s in sides) else EXIT_FAIL
    return _print_table(base.name, table.run_matrix(base, variants, out, setup, visible_gpus=here), out)


def _print_table(model: str, rows: list, out: Path) -> int:
    from qwen_acceptance.sensitivity import table

    print(table.markdown(model, rows), end="")
    print(f"table and logs: {out}")
    return EXIT_PASS if all(r.outcome in ("passed", "caught", "skipped") for r in rows) else EXIT_FAIL


def cmd_memory(args: argparse.Namespace) -> int:
    """Modelled peak memory per GPU for a model and layout, before any GPU is booked (``memory.py``)."""
    from qwen_acceptance.perf import memory

    args.probe = True  # a plan, not an acceptance run: any GPU count
    spec = spec_from_args(args.model, args)
    try:
        recipe = recipes.for_reading(spec)
    except ImportError as exc:
        raise AcceptanceError(
            f"memory: reading {spec.name}'s NeMo recipe needs NeMo ({exc.name} not importable)"
        ) from None
    dims, parallel = memory.for_recipe(spec, recipe.model.config)
    est = memory.estimate(dims, parallel)
    capacities = {"--gpu-memory": args.gpu_memory} if args.gpu_memory is not None else memory.capacities()
    fits = {name: memory.fits(est, gib) for name, gib in capacities.items()}
    if args.json:
        _print_json(
            {
                "model": spec.name,
                "gpus": spec.gpus,
                "layout": spec.layout.describe(),
                "global_batch_size": spec.global_batch_size,
                "micro_batch_size": spec.micro_batch_size,
                "seq_length": spec.seq_length,
                "recompute": parallel.recompute,
                **est.__dict__,
                "headroom": memory.HEADROOM,
                "fits": fits,
            }
        )
    else:
        print(
            f"{spec.name} on {spec.gpus} GPU{'s' if spec.gpus > 1 else ''}, {spec.layout.describe()}, "
            f"global batch {spec.global_batch_size} (micro {spec.micro_batch_size}, "
            f"{parallel.microbatches} per data-parallel rank), seq {spec.seq_length}, "
            f"{'full recompute' if parallel.recompute else 'no recompute'}; busiest rank: "
            f"{est.params_per_rank / 1e9:.2f} B parameters, weights+gradients+optimizer {est.static_gib:.1f} GiB, "
            f"activations {est.activations_gib:.1f} GiB, logits {est.logits_gib:.1f} GiB, optimizer-step "
            f"temporary {est.optimizer_step_gib:.1f} GiB; peak {est.peak_gib:.1f} GiB, "
            f"{est.peak_gib * (1 + memory.HEADROOM):.1f} GiB with {memory.HEADROOM:.0%} headroom"
        )
        for name, ok in fits.items():
            print(f"  {name} ({capacities[name]} GiB): {'fits' if ok else 'does not fit'}")
    return EXIT_PASS if all(fits.values()) or args.gpu_memory is None else EXIT_FAIL


def _add_models_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help=f"model matrix YAML (default: the packaged one, or ${models.MODELS_ENV})",
    )


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line, as every other bad input is (exit 2); ``--help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (--help for usage)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qwen-acceptance", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    summ = sub.add_parser("summarize", help="steps, final loss and throughput of a NeMo training log")
    summ.add_argument("log", type=Path)
    summ.add_argument("--json", action="store_true", help="machine-readable output")
    summ.add_argument("--model", help="model from the matrix (gives seq length and GPUs to derive throughput)")
    summ.add_argument("--seq-length", type=argtypes.positive_int, help="to derive tokens/s/GPU when the log lacks it")
    summ.add_argument("--gpus", type=argtypes.positive_int, help="to derive tokens/s/GPU when the log lacks it")
    _add_models_option(summ)
    summ.set_defaults(func=cmd_summarize)

    chk = sub.add_parser("check", help="the verdict of the reference rule for one log")
    chk.add_argument("log", type=Path)
    source = chk.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="judge against this model's entry in the baselines file")
    source.add_argument(
        "--baseline-loss", type=argtypes.positive_float, help="judge against this loss instead of a baselines file"
    )
    chk.add_argument("--baselines", type=Path, default=Path("baselines.yaml"), help="default: ./baselines.yaml")
    chk.add_argument(
        "--tolerance", type=argtypes.fraction, help="relative tolerance (default: the baseline's, else 0.05)"
    )
    chk.add_argument(
        "--final-step", type=argtypes.nonnegative_int, help="step to read the loss at (default: max_steps - 1)"
    )
    chk.add_argument("--json", action="store_true", help="machine-readable output")
    _add_models_option(chk)
    chk.set_defaults(func=cmd_check)

    pre = sub.add_parser("preprocess", help="JSON lines -> Megatron indexed files, as NeMo's preprocess script")
    pre.add_argument("--input", required=True, help="a .jsonl or .jsonl.gz file, or hf://datasets/REPO/FILE")
    pre.add_argument("--json-keys", nargs="+", default=["text"], help="keys whose text to tokenize (default: text)")
    pre.add_argument("--tokenizer-library", choices=["huggingface"], default="huggingface")
    pre.add_argument(
        "--tokenizer-type",
        required=True,
        help=f"a tokenizer directory, a hub id (Qwen/Qwen3-8B), or {sources.BUNDLED_QWEN3}",
    )
    pre.add_argument("--output-prefix", required=True, help="writes PREFIX_KEY_document.bin/.idx")
    pre.add_argument("--workers", type=argtypes.positive_int, default=1)
    pre.add_argument("--append-eod", action="store_true", help="end each document with the eos token")
    pre.add_argument(
        "--use-fast",
        action="store_true",
        help="accepted as NeMo's flag; the ids are the same either way (the tests prove it)",
    )
    pre.add_argument("--skip-invalid", action="store_true", help="skip and count bad lines instead of stopping")
    pre.add_argument(
        "--encoder",
        choices=["auto", "tiktoken", "hf-fast"],
        default="auto",
        help="how to tokenize (same ids either way): auto takes tiktoken where it is exact",
    )
    pre.add_argument("--no-progress", action="store_true", help="no progress bar")
    pre.set_defaults(func=cmd_preprocess)

    lau = _model_parser(
        sub,
        "launch",
        cmd_launch,
        live=True,
        help="train a model of the matrix with NeMo (torchrun), as the pytest suite does",
    )
    lau.add_argument("--dry-run", action="store_true", help="print the command and resolved configuration (YAML)")

    ben = _model_parser(
        sub,
        "bench",
        cmd_bench,
        live=True,
        help="throughput probe: the full model for a few steps; tokens/s/GPU, MFU, memory",
    )
    ben.add_argument("--steps", type=argtypes.positive_int, default=30, help="steps to run (default 30)")
    ben.add_argument("--json", action="store_true", help="machine-readable output")

    sen = sub.add_parser(
        "sensitivity",
        help="train the fault catalogue's variants of a smoke model and tabulate what the suite's checks catch",
    )
    sen.add_argument("model")
    sen.add_argument("--faults", nargs="+", metavar="NAME", help="variants to run (default: the whole catalogue)")
    sen.add_argument(
        "--lr-scale",
        type=argtypes.positive_float,
        action="append",
        default=[],
        metavar="S",
        help="also a variant with the learning rate × S (repeatable; for bisecting detection power)",
    )
    sen.add_argument(
        "--from-logs",
        nargs="+",
        type=argtypes.variant_log,
        metavar="VARIANT=PATH",
        help="judge these recorded logs (a variant of the catalogue, or lr_xS, each) instead of training",
    )
    sen.add_argument(
        "--bisect-lr",
        type=argtypes.positive_int,
        metavar="ROUNDS",
        help="find the learning-rate multipliers above and below 1 the suite first fails: ×3 and ×0.3, then ROUNDS "
        "rounds narrowing each bracket (--jobs multipliers a round); exit 1 when a side is not bracketed",
    )
    sen.add_argument(
        "--jobs",
        type=argtypes.positive_int,
        default=1,
        metavar="N",
        help="train up to N variants at once on the same GPUs (their throughput is then not judged; default 1); with "
        "--from-logs: the logs were trained N at a time",
    )
    sen.add_argument("--catalogue", type=Path, help="fault catalogue YAML (default: the packaged faults.yaml)")
    sen.add_argument(
        "--out", type=Path, help="table.md, table.json and logs/ go here (default: RUNS_DIR/sensitivity/MODEL-STAMP)"
    )
    sen.add_argument(
        "--baselines",
        type=Path,
        default=Path("baselines.yaml"),
        help="the baselines the variants are judged against (default: ./baselines.yaml)",
    )
    _add_models_option(sen)
    for flag, kwargs in LIVE_OPTIONS:
        sen.add_argument(flag, **kwargs)
    sen.set_defaults(func=cmd_sensitivity)

    mem = _model_parser(
        sub, "memory", cmd_memory, live=False, help="modelled peak GPU memory for a model and layout (no GPU needed)"
    )
    mem.add_argument(
        "--gpu-memory",
        type=argtypes.positive_float,
        metavar="GIB",
        help="judge against this much memory per GPU; exit 1 if it does not fit "
        "(default: report against the GPUs in gpus.yaml)",
    )
    mem.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _model_parser(
    sub: Any, name: str, func: Callable[[argparse.Namespace], int], *, live: bool, help: str
) -> argparse.ArgumentParser:
    """A subcommand about one model of the matrix: the run options (``train``'s), and where it starts a run,
    the launcher's options (``LIVE_OPTIONS``, shared with the pytest plugin)."""
    parser = sub.add_parser(name, help=help)
    parser.add_argument("model")
    add_run_arguments(parser)
    for flag, kwargs in LIVE_OPTIONS if live else ():
        parser.add_argument(flag, **kwargs)
    parser.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except AcceptanceError as exc:
        print(f"qwen-acceptance: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # whatever was running has cleaned up after itself on the way out
        print("qwen-acceptance: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
