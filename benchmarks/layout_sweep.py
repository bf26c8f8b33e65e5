"""Probe candidate layouts with `qwen-acceptance bench` and tabulate them against the recipe's default layout.

The candidates per model and GPU count are in benchmarks/layouts.yaml. Each probe's JSON result goes to
OUT/MODEL-NGPU-NAME.json and its stderr beside it (names without '=' or ',', which some file transports drop);
the table goes to OUT/table.md and stdout: model, GPUs, layout, global batch, tokens/s/GPU, MFU, peak memory,
the speed-up over the "recipe" candidate of the same model and GPU count, and the command. A probe that fails
(out of memory, NaN, time limit) is a row with its one-line reason.

Usage: python benchmarks/layout_sweep.py --gpus 8 --out DIR [--models M ...] [--steps 30] [--global-batch-size 32]
       [--timeout 540] [--dry-run] [-- extra `qwen-acceptance bench` arguments, e.g. --corpus ... --tokenizer ...]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LAYOUTS = Path(__file__).with_name("layouts.yaml")


@dataclass(frozen=True)
class Candidate:
    model: str
    gpus: int
    name: str
    layout: str
    micro_batch_size: int | None = None
    override: tuple[str, ...] = ()

    @property
    def stem(self) -> str:
        return f"{self.model}-{self.gpus}gpu-{self.name}"

    def command(self, steps: int, global_batch_size: int | None, extra: list[str]) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "qwen_acceptance.cli",
            "bench",
            self.model,
            "--json",
            "--gpus",
            str(self.gpus),
            "--steps",
            str(steps),
            "--layout",
            self.layout,
        ]
        if global_batch_size:
            cmd += ["--global-batch-size", str(global_batch_size)]
        if self.micro_batch_size:
            cmd += ["--micro-batch-size", str(self.micro_batch_size)]
        for item in self.override:
            cmd += ["--override", item]
        return cmd + extra


def candidates(gpus: int, models: list[str] | None = None, path: Path = LAYOUTS) -> list[Candidate]:
    table: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    unknown = set(models or []) - set(table)
    if unknown:
        raise SystemExit(f"{path}: no candidates for {', '.join(sorted(unknown))}")
    found = []
    for model, per_gpus in table.items():
        if models and model not in models:
            continue
        for entry in (per_gpus or {}).get(gpus, []):
            found.append(
                Candidate(
                    model,
                    gpus,
                    entry["name"],
                    entry["layout"],
                    entry.get("micro_batch_size"),
                    tuple(entry.get("override", ())),
                )
            )
    return found


def run(candidate: Candidate, cmd: list[str], out: Path, timeout: float) -> dict[str, Any]:
    """One probe; its JSON result, or {"error": the one-line reason}."""
    err_path = out / f"{candidate.stem}.err"
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        err_path.write_text(exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or "")
        return {"error": f"no result within {timeout:.0f} s"}
    err_path.write_text(done.stderr)
    if done.returncode == 0:
        (out / f"{candidate.stem}.json").write_text(done.stdout)
        return json.loads(done.stdout)
    reasons = [line for line in done.stderr.splitlines() if line.startswith("qwen-acceptance:")]
    return {"error": reasons[-1] if reasons else f"exit {done.returncode}"}


def table(rows: list[tuple[Candidate, list[str], dict[str, Any]]]) -> str:
    """Markdown rows; the speed-up is over the "recipe" row of the same model and GPU count."""
    recipe = {
        (c.model, c.gpus): r["tokens_per_sec_per_gpu"] for c, _, r in rows if c.name == "recipe" and "error" not in r
    }
    lines = [
        "| model | GPUs | candidate | layout | global batch (micro) | tokens/s/GPU | MFU | peak GiB | vs recipe "
        "| command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c, cmd, r in rows:
        shown = shlex.join(["qwen-acceptance", *cmd[3:]])
        if "error" in r:
            lines.append(f"| {c.model} | {c.gpus} | {c.name} | {c.layout} | | {r['error']} | | | | `{shown}` |")
            continue
        base = recipe.get((c.model, c.gpus))
        speedup = f"{r['tokens_per_sec_per_gpu'] / base:.2f}×" if base else "—"
        mfu = "—" if r.get("mfu") is None else f"{r['mfu']:.1%}"
        lines.append(
            f"| {c.model} | {c.gpus} | {c.name} | {r['layout']} | {r['global_batch_size']} "
            f"({r['micro_batch_size']}) | {r['tokens_per_sec_per_gpu']:,.0f} | {mfu} | "
            f"{r['peak_memory_gib']} | {speedup} | `{shown}` |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--global-batch-size", type=int, help="a lower batch keeps probes short (record it)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=540.0,
        help="seconds per probe: the launcher's --time-limit, which stops every rank cleanly",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more `bench` arguments")
    args = parser.parse_args(argv)
    extra = [a for a in args.extra if a != "--"] + ["--time-limit", str(args.timeout)]
    todo = [(c, c.command(args.steps, args.global_batch_size, extra)) for c in candidates(args.gpus, args.models)]
    if not todo:
        raise SystemExit(f"{LAYOUTS}: no candidates for {args.gpus} GPUs")
    if args.dry_run:
        print("\n".join(shlex.join(cmd) for _, cmd in todo))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for candidate, cmd in todo:
        print(f"[sweep] {candidate.stem}: {shlex.join(cmd[3:])}", file=sys.stderr, flush=True)
        # The outer timeout only backs up the launcher's own limit (it also covers data preparation).
        rows.append((candidate, cmd, run(candidate, cmd, args.out, args.timeout + 300)))
        (args.out / "table.md").write_text(table(rows))  # after every probe: a cut-short sweep keeps its rows
    print(table(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
