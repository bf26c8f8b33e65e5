"""The run report a team reads in the morning: loss against the baseline curve, tokens/s/GPU per step, a Markdown
summary with the verdict, and where the numbers came from."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qwen_acceptance.judge import curves, metrics
from qwen_acceptance.judge.baselines import Baseline
from qwen_acceptance.judge.logparse import LOSS, TOKENS_PER_GPU, TrainingLog
from qwen_acceptance.judge.verdict import relative_delta
from qwen_acceptance.models import ModelSpec


def _plot_loss(path: Path, log: TrainingLog, baseline: Baseline | None, name: str, final_step: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = log.ordered()
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    ax.plot(
        [r.step for r in steps], [r.get(LOSS) for r in steps], lw=0.6, alpha=0.45, color="C0", label="run, each step"
    )
    run_curve = curves.sparse(log)
    ax.plot(run_curve.steps, run_curve.loss, color="C0", lw=1.8, label="run, 10-step means")
    if baseline is not None and baseline.curve is not None:
        b = baseline.curve
        ax.plot(b.steps, b.loss, color="C1", lw=1.8, label="baseline, 10-step means")
        ax.fill_between(
            b.steps,
            [v * (1 - baseline.curve_band) for v in b.loss],
            [v * (1 + baseline.curve_band) for v in b.loss],
            color="C1",
            alpha=0.12,
            label=f"curve band ±{baseline.curve_band:.0%}",
        )
    if baseline is not None and baseline.final_loss is not None:
        spread = baseline.final_loss * baseline.tolerance
        ax.errorbar(
            [final_step],
            [baseline.final_loss],
            yerr=[[spread], [spread]],
            fmt="s",
            color="C3",
            capsize=5,
            label=f"baseline final loss ±{100 * baseline.tolerance:g}%",
        )
    ax.set_xlabel("global step")
    ax.set_ylabel(LOSS)
    ax.set_title(f"{name}: loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_throughput(
    path: Path, log: TrainingLog, tp: metrics.Throughput | None, baseline: Baseline | None, name: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in log.ordered() if r.get(TOKENS_PER_GPU) is not None]
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    ax.plot([r.step for r in steps], [r.get(TOKENS_PER_GPU) for r in steps], lw=0.8, color="C0", label="run, each step")
    if tp is not None:
        ax.axvspan(tp.first_step, tp.last_step, color="C2", alpha=0.08, label="reference window")
        ax.axhline(tp.mean, color="C0", ls="--", label=f"run mean {tp.mean:,.0f}")
    if baseline is not None and baseline.tokens_per_sec_per_gpu:
        ref = baseline.tokens_per_sec_per_gpu
        low, high = baseline.throughput_band
        ax.axhline(ref, color="C1", label=f"baseline {ref:,.0f}")
        ax.axhspan(ref * (1 + low), ref * (1 + high), color="C1", alpha=0.1, label=f"band {low:+.0%}/{high:+.0%}")
    ax.set_xlabel("global step")
    ax.set_ylabel("tokens/s/GPU")
    ax.set_title(f"{name}: throughput")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(value: Any, spec: str = "") -> str:
    return "—" if value is None else format(value, spec)


def write(
    folder: Path,
    *,
    spec: ModelSpec,
    log: TrainingLog,
    log_path: Path,
    origin: str,
    baseline: Baseline | None,
    throughput: metrics.Throughput | None,
    provenance: Mapping[str, Any],
    results: Mapping[str, Any],
) -> Path:
    """Write loss.png, throughput.png, summary.md and provenance.json into ``folder``; returns summary.md."""
    folder.mkdir(parents=True, exist_ok=True)
    tp = throughput
    _plot_loss(folder / "loss.png", log, baseline, spec.name, spec.final_step)
    _plot_throughput(folder / "throughput.png", log, tp, baseline, spec.name)
    (folder / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    last = log.last_step
    final = log.steps[last].get(LOSS) if last == spec.final_step else None  # a run cut short has no final loss
    base_loss = baseline.final_loss if baseline else None
    delta = None if final is None or base_loss is None else 100 * relative_delta(final, base_loss)
    gpus, layout = provenance.get("gpus"), provenance.get("layout")
    rows = [
        ("model", f"{spec.name} (recipe {spec.recipe})"),
        (
            "GPUs / layout",
            f"{_fmt(gpus)} × {provenance.get('gpu') or 'unknown GPU'} / {_fmt(layout)}"
            + ("" if gpus and layout else " (as far as the log shows)"),
        ),
        ("global batch / seq length", f"{spec.global_batch_size} / {spec.seq_length}"),
        ("steps", f"last logged {last} of {spec.final_step}"),
        ("final loss", _fmt(final) if last == spec.final_step else f"— (last logged step {last})"),
        ("baseline final loss", _fmt(base_loss)),
        ("delta", "—" if delta is None else f"{delta:+.2f}% (tolerance ±{100 * baseline.tolerance:g}%)"),
        (
            "tokens/s/GPU (reference window)",
            "—" if tp is None else f"{tp.mean:,.0f} over steps {tp.first_step}..{tp.last_step} ({tp.steps_used} steps)",
        ),
        ("baseline tokens/s/GPU", _fmt(baseline.tokens_per_sec_per_gpu if baseline else None, ",.0f")),
    ]
    if results.get("mfu") is not None:
        rows.append(("MFU", f"{results['mfu']:.1%}"))
    if "curve_correlation" in results:
        rows.append(
            (
                "curve",
                f"worst {results.get('curve_worst_deviation_pct')}% at step "
                f"{results.get('curve_worst_step')}, correlation {results['curve_correlation']}",
            )
        )
    if "conforms" in results:
        rows.append(
            (
                "reference configuration",
                "followed" if results["conforms"] else "differs: " + "; ".join(results["conformance_differences"]),
            )
        )
        if results["conformance_unverified"]:
            rows.append(("not verified (warning)", "; ".join(results["conformance_unverified"])))
    if results.get("stopped"):
        rows.append(("run stopped", results["stopped"]))
    rows.append(("verdict (reference rule)", results.get("verdict", "not judged")))
    lines = [f"# {spec.name}: acceptance run report", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += [
        "",
        "![loss](loss.png)",
        "",
        "![throughput](throughput.png)",
        "",
        "## Provenance",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in provenance.items()]
    summary = folder / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    return summary
