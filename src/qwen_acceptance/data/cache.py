"""The preprocessed dataset, built once and reused while its inputs are unchanged.

The cache key covers the corpus's content, the tokenizer's files and the options, so a changed corpus or tokenizer
builds anew. A file lock makes concurrent callers (pytest-xdist workers, several sessions) take turns: one builds,
the others wait and reuse. A build that did not finish has no COMPLETE marker and is removed, never reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from qwen_acceptance.data import preprocess
from qwen_acceptance.data.sources import resolve_tokenizer

FORMAT_VERSION = 1  # bump when the bytes preprocess writes for the same inputs change
_MARKER = "COMPLETE"


@dataclass(frozen=True)
class Dataset:
    prefix: Path  # what Megatron's data paths take: PREFIX.bin / PREFIX.idx
    built: bool  # False when an earlier build was reused


def _hash_file(digest: hashlib._Hash, path: Path) -> None:
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)


def cache_key(corpus: Path, tokenizer_dir: Path, json_key: str, append_eod: bool) -> str:
    digest = hashlib.sha256(f"v{FORMAT_VERSION}|{json_key}|eod={append_eod}|".encode())
    _hash_file(digest, corpus)
    for name in sorted(p.name for p in tokenizer_dir.iterdir() if p.suffix in {".json", ".txt", ".model"}):
        digest.update(name.encode())
        _hash_file(digest, tokenizer_dir / name)
    return digest.hexdigest()[:24]


def ensure_dataset(
    corpus: Path,
    tokenizer: str,
    cache_dir: Path,
    *,
    json_key: str = "text",
    append_eod: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> Dataset:
    """The prefix of the preprocessed ``corpus``: reused when complete, else built under the lock."""
    tokenizer_dir = resolve_tokenizer(tokenizer)
    if progress:
        print(f"[qwen-acceptance] hashing {corpus} for the dataset cache", file=sys.stderr)
    key = cache_key(corpus, tokenizer_dir, json_key, append_eod)
    cache_dir.mkdir(parents=True, exist_ok=True)
    folder = cache_dir / key
    stem = corpus.name.removesuffix(".gz").removesuffix(".jsonl").removesuffix(".json")
    prefix = folder / f"{stem}_{json_key}_document"
    with FileLock(str(cache_dir / f"{key}.lock")):
        if (folder / _MARKER).is_file():
            return Dataset(prefix, built=False)
        shutil.rmtree(folder, ignore_errors=True)  # leftovers of a build that died
        report = preprocess.build(
            preprocess.Options(
                input=corpus,
                output_prefix=folder / stem,
                tokenizer=str(tokenizer_dir),
                json_keys=(json_key,),
                workers=workers,
                append_eod=append_eod,
                progress=progress,
            )
        )
        (folder / _MARKER).write_text(
            json.dumps(
                {
                    "corpus": str(corpus),
                    "tokenizer": tokenizer,
                    "append_eod": append_eod,
                    "documents": report.documents,
                    "tokens": report.tokens,
                },
                indent=1,
            )
        )
    return Dataset(prefix, built=True)
