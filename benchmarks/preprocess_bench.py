"""Preprocessing speed: NeMo's reference behaviour against `qwen-acceptance preprocess`, same input and workers.

The reference path is what NeMo 2.5's preprocess_data_for_megatron.py does with the reference flags: NeMo's own
tokenizer (get_nmt_tokenizer, huggingface library, slow tokenizer), text_to_ids one document at a time through a
multiprocessing pool (imap, chunks of 25), written with Megatron-Core's IndexedDatasetBuilder. Both outputs are
compared byte for byte. Usage:
    python benchmarks/preprocess_bench.py [--megabytes 16] [--workers 1 2]
The input is unique real text: the Python standard library's source files (PSF License), one document each, in
sorted order. (A corpus repeated to size would favour the slow tokenizer's per-word cache and mislead.)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

from qwen_acceptance.data import preprocess, sources

_TOKENIZER = None


def _init(tokenizer_dir: str) -> None:
    from nemo.collections.nlp.modules.common.tokenizer_utils import get_nmt_tokenizer

    global _TOKENIZER
    _TOKENIZER = get_nmt_tokenizer(library="huggingface", model_name=tokenizer_dir)  # use_fast=False: NeMo's default


def _encode(line: str) -> list[int]:
    return _TOKENIZER.text_to_ids(json.loads(line)["text"])


def reference(path: Path, prefix: Path, workers: int, tokenizer_dir: Path) -> tuple[float, int]:
    import torch
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    _init(str(tokenizer_dir))
    builder = IndexedDatasetBuilder(f"{prefix}_text_document.bin", dtype=DType.optimal_dtype(_TOKENIZER.vocab_size))
    tokens = 0
    start = time.monotonic()
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
    return time.monotonic() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=float, default=16, help="characters of input, in millions")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    tokenizer_dir = sources.bundled_qwen3_dir()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "corpus.jsonl"
        chars = 0
        with path.open("w", encoding="utf-8") as out:
            for source in sorted(Path(json.__file__).parents[1].glob("*.py")) + sorted(
                Path(json.__file__).parents[1].glob("*/*.py")
            ):
                text = source.read_text(encoding="utf-8", errors="replace")
                out.write(json.dumps({"text": text}) + "\n")
                chars += len(text)
                if chars >= args.megabytes * 1e6:
                    break
        print(f"input: Python stdlib sources, {path.stat().st_size / 1e6:.1f} MB, {chars / 1e6:.2f} M chars")
        print("| workers | reference tokens/s | ours tokens/s | per worker: ref / ours | speed-up | identical |")
        print("|---|---|---|---|---|---|")
        for workers in args.workers:
            ref_s, tokens = reference(path, tmp / f"ref{workers}", workers, tokenizer_dir)
            report = preprocess.build(
                preprocess.Options(path, tmp / f"ours{workers}", str(tokenizer_dir), workers=workers, progress=False)
            )
            same = all(
                (tmp / f"ref{workers}_text_document{s}").read_bytes()
                == (tmp / f"ours{workers}_text_document{s}").read_bytes()
                for s in (".bin", ".idx")
            )
            assert report.tokens == tokens, (report.tokens, tokens)
            ref_rate, our_rate = tokens / ref_s, tokens / report.seconds
            print(
                f"| {workers} | {ref_rate:,.0f} | {our_rate:,.0f} | {ref_rate / workers:,.0f} / "
                f"{our_rate / workers:,.0f} | {our_rate / ref_rate:.1f}× | {same} |"
            )


if __name__ == "__main__":
    main()
