"""Preprocessing speed: NeMo's reference behaviour against `qwen-acceptance preprocess`, swept over worker counts.

The reference path is what NeMo 2.5's preprocess_data_for_megatron.py does with the reference flags: NeMo's own
tokenizer (get_nmt_tokenizer, huggingface library, slow tokenizer), text_to_ids one document at a time through a
multiprocessing pool (imap, chunks of 25), written with Megatron-Core's IndexedDatasetBuilder. Ours is
``preprocess.build``. Every point runs in a fresh process, whose whole tree is sampled for its peak resident memory;
every output is compared byte for byte with the first one. Before each point the same command on the input's first
document alone measures its start-up (imports, tokenizer loads, the pool's start): the steady rate, what a corpus
of gigabytes sees, is the tokens over the rest of the time, and parallel efficiency is read from it. Usage:

    python benchmarks/preprocess_bench.py [--megabytes 200] [--workers 1 2 4 8 16] [--paths ours reference]
                                          [--json OUT.json]
    python benchmarks/preprocess_bench.py --merge A.json B.json ...   (one table from a sweep split in parts)

The input is unique real text: the Python source files of this interpreter's standard library and every folder on
``sys.path`` (site-packages, and what PYTHONPATH carries), one document each, deduplicated by content, in sorted
order, until ``--megabytes`` of JSON lines (a corpus repeated to size would favour the slow tokenizer's per-word
cache and mislead). The parent's own CPU time in the steady phase is reported as the share of that phase it was
busy: the steady rate divided by that share is where the one parent (it writes, and reads a
``.jsonl.gz``; workers read a plain ``.jsonl`` themselves) would become the ceiling.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

_TOKENIZER = None


def _init(tokenizer_dir: str) -> None:
    from nemo.collections.nlp.modules.common.tokenizer_utils import get_nmt_tokenizer

    global _TOKENIZER
    _TOKENIZER = get_nmt_tokenizer(library="huggingface", model_name=tokenizer_dir)  # use_fast=False: NeMo's default


def _encode(line: str) -> list[int]:
    return _TOKENIZER.text_to_ids(json.loads(line)["text"])


def reference(path: Path, prefix: Path, workers: int, tokenizer_dir: Path) -> int:
    import torch
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    _init(str(tokenizer_dir))
    builder = IndexedDatasetBuilder(f"{prefix}_text_document.bin", dtype=DType.optimal_dtype(_TOKENIZER.vocab_size))
    tokens = 0
    with (
        multiprocessing.get_context("fork").Pool(workers, _init, (str(tokenizer_dir),)) as pool,
        path.open(encoding="utf-8") as handle,
    ):
        for ids in pool.imap(_encode, handle, 25):
            if ids:
                builder.add_item(torch.IntTensor(ids))
                builder.end_document()
                tokens += len(ids)
    builder.finalize(f"{prefix}_text_document.idx")
    return tokens


def one_point(which: str, path: Path, prefix: Path, workers: int) -> dict:
    """One measurement, in this (fresh) process: wall seconds, the parent's CPU seconds, tokens, output digest."""
    from qwen_acceptance.data import preprocess, sources

    tokenizer_dir = sources.bundled_qwen3_dir()
    cpu0, start = time.process_time(), time.monotonic()
    if which == "reference":
        tokens = reference(path, prefix, workers, tokenizer_dir)
    else:
        options = preprocess.Options(path, prefix, str(tokenizer_dir), workers=workers, progress=False)
        tokens = preprocess.build(options).tokens
    wall, cpu = time.monotonic() - start, time.process_time() - cpu0
    digest = hashlib.sha256()
    for suffix in (".bin", ".idx"):
        digest.update(Path(f"{prefix}_text_document{suffix}").read_bytes())
    return {
        "seconds": wall,
        "parent_cpu_seconds": cpu,
        "parent_busy": cpu / wall,  # of the whole run; derive() takes the steady phase's where a start-up is known
        "tokens": tokens,
        "sha256": digest.hexdigest(),
    }


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants, now."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid = int(stat.parent.name)
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(pid)
            rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def measure(which: str, path: Path, prefix: Path, workers: int) -> dict:
    """``one_point`` in a child process, its process tree's resident memory sampled every 0.2 s."""
    cmd = [sys.executable, "-W", "ignore", __file__, "--one", which, str(path), str(prefix), str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = 0

    def sample() -> None:
        nonlocal peak
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{which} with {workers} workers failed (exit {proc.returncode})")
    return {**json.loads(out.splitlines()[-1]), "peak_rss_gib": peak / 2**30}


def write_corpus(path: Path, megabytes: float) -> tuple[int, int]:
    """Unique Python sources (stdlib, then every folder on sys.path: site-packages and what PYTHONPATH carries) as
    JSON lines; returns (documents, characters). Too little unique text is an error, not a smaller benchmark."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), *(Path(p) for p in sys.path if p and Path(p).is_dir())]
    seen: set[str] = set()
    visited: set[Path] = set()
    documents = chars = 0
    with path.open("w", encoding="utf-8") as out:
        for root in roots:
            if root.resolve() in visited:
                continue
            visited.add(root.resolve())
            for source in sorted(root.rglob("*.py")):
                try:
                    text = source.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                key = hashlib.sha1(text.encode()).hexdigest()
                if key in seen or not text.strip():
                    continue
                seen.add(key)
                out.write(json.dumps({"text": text}) + "\n")
                documents, chars = documents + 1, chars + len(text)
                if out.tell() >= megabytes * 1e6:
                    return documents, chars
        found = out.tell() / 1e6
    raise SystemExit(
        f"preprocess_bench: only {found:.1f} MB of unique Python sources under {', '.join(map(str, visited))}; "
        f"--megabytes {megabytes:g} asks for more (add folders to PYTHONPATH, or ask for less)"
    )


HEADER = (
    "| path | workers | tokens/s | MB/s | start-up s | steady tokens/s | efficiency vs 1 worker (steady) | "
    "parent CPU / wall | parent ceiling tokens/s | peak RSS (tree) GiB | identical |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def _steady(p: dict) -> tuple[float, float] | None:
    """Wall and parent-CPU seconds once started: the whole run less the same command on a one-document input
    (imports, tokenizer loads, the pool's start), which a corpus of gigabytes pays once; None for points measured
    without it, or where the input was too small to tell the two apart (either difference not positive)."""
    if "startup_seconds" not in p:
        return None
    wall, cpu = p["seconds"] - p["startup_seconds"], p["parent_cpu_seconds"] - p["startup_parent_cpu_seconds"]
    return (wall, cpu) if wall > 0 and cpu > 0 else None


def derive(points: list[dict], input_mb: float) -> list[str]:
    """Each point's rates (whole run, and steady), efficiency of the steady rate against the same path's 1-worker
    point, parent ceiling and byte-identity with the first point (added to the points), and its table line."""

    def steady_rate(p: dict) -> float | None:
        return p["tokens"] / phase[0] if (phase := _steady(p)) else None

    one = {p["path"]: steady_rate(p) for p in points if p["workers"] == 1}
    first = points[0]["sha256"]
    lines = []
    for p in points:
        rate, steady, phase = p["tokens"] / p["seconds"], steady_rate(p), _steady(p)
        eff = steady / (p["workers"] * one[p["path"]]) if steady and one.get(p["path"]) else None
        if phase:  # the parent's share of the steady phase, and the rate at which it alone would be the limit
            p["parent_busy"] = phase[1] / phase[0]
        ceiling = (steady or rate) / p["parent_busy"] if p["parent_busy"] else None
        p.update(
            tokens_per_s=rate,
            mb_per_s=input_mb / p["seconds"],
            steady_tokens_per_s=steady,
            efficiency=eff,
            identical=p["sha256"] == first,
        )
        startup = p.get("startup_seconds")
        lines.append(
            f"| {p['path']} | {p['workers']} | {rate:,.0f} | {p['mb_per_s']:.2f} | "
            f"{'—' if startup is None else f'{startup:.1f}'} | {'—' if steady is None else f'{steady:,.0f}'} | "
            f"{'—' if eff is None else f'{eff:.0%}'} | {p['parent_busy']:.0%} | "
            f"{'—' if ceiling is None else f'{ceiling:,.0f}'} | {p['peak_rss_gib']:.2f} | "
            f"{'yes' if p['identical'] else 'NO'} |"
        )
    return lines


KEYS = {"corpus_sha256", "documents", "input_mb", "cpus", "points"}  # what every --json output holds


def merge(files: list[Path]) -> None:
    """One table from several runs on the same input (a sweep split to fit a time limit)."""
    runs = []
    for f in files:
        try:
            run = json.loads(f.read_text())
            why = "" if isinstance(run, dict) and set(run) >= KEYS else f"it lacks one of {', '.join(sorted(KEYS))}"
        except (OSError, ValueError) as exc:
            why = str(exc)
        if why:
            raise SystemExit(f"preprocess_bench: --merge {f}: not a --json output of this script ({why})")
        runs.append(run)
    if len({r["corpus_sha256"] for r in runs}) != 1:
        raise SystemExit(f"preprocess_bench: --merge {' '.join(map(str, files))}: the runs read different inputs")
    points = [p for r in runs for p in r["points"]]
    print(f"input: {runs[0]['documents']} unique Python sources, {runs[0]['input_mb']:.1f} MB; {runs[0]['cpus']} CPUs")
    print(HEADER)
    print("\n".join(derive(points, runs[0]["input_mb"])))


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        which, path, prefix, workers = sys.argv[2:6]
        print(json.dumps(one_point(which, Path(path), Path(prefix), int(workers))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=200, help="size of the JSON-lines input, in MB")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--paths", nargs="+", choices=["ours", "reference"], default=["ours", "reference"])
    parser.add_argument("--json", type=Path, help="also write every point here (rewritten after each)")
    parser.add_argument(
        "--merge", type=Path, nargs="+", metavar="JSON", help="print one table from earlier --json runs"
    )
    args = parser.parse_args()
    if args.merge:
        merge(args.merge)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "corpus.jsonl"
        documents, chars = write_corpus(path, args.megabytes)
        size = path.stat().st_size
        corpus_sha = hashlib.sha256(path.read_bytes()).hexdigest()
        first_line = tmp / "first.jsonl"
        with path.open("rb") as handle:
            first_line.write_bytes(handle.readline())
        print(
            f"input: {documents} unique Python sources, {size / 1e6:.1f} MB, {chars / 1e6:.1f} M characters; "
            f"{os.cpu_count()} CPUs"
        )
        print(HEADER)
        points: list[dict] = []
        for which in args.paths:
            for workers in args.workers:
                startup = measure(which, first_line, tmp / "startup", workers)
                points.append(
                    {
                        "path": which,
                        "workers": workers,
                        "startup_seconds": startup["seconds"],
                        "startup_parent_cpu_seconds": startup["parent_cpu_seconds"],
                        **measure(which, path, tmp / f"{which}{workers}", workers),
                    }
                )
                print(derive(points, size / 1e6)[-1], flush=True)
                for suffix in (".bin", ".idx"):
                    Path(f"{tmp / f'{which}{workers}'}_text_document{suffix}").unlink()
                if args.json:  # after every point: a sweep cut short by a time limit keeps what it measured
                    doc = {
                        "input_mb": size / 1e6,
                        "documents": documents,
                        "cpus": os.cpu_count(),
                        "corpus_sha256": corpus_sha,
                        "points": points,
                    }
                    args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
