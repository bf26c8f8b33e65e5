"""Text to token ids, as NeMo's slow Hugging Face tokenizer would give them, but fast.

Qwen's tokenizer is byte-level BPE whose merge order equals its token ids (it was converted from a tiktoken
vocabulary). For such a tokenizer, tiktoken, given the same vocabulary, the same split pattern and the NFC
normalisation, produces the same ids about 2-3 times faster than the Rust `tokenizers` library (measured in
BENCHMARKS.md). `choose` checks that shape in tokenizer.json and otherwise picks the Hugging Face fast tokenizer.
Either way the tests compare the ids with the slow tokenizer's `tokenize` + `convert_tokens_to_ids`.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Encoder:
    name: str  # "tiktoken" or "hf-fast": printed, so a user knows which path made their files
    encode_batch: Callable[[list[str]], list[list[int]]]


def _byte_decoder() -> dict[str, int]:
    """Byte-level BPE writes each byte as a printable character; this maps the characters back to bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def _tiktoken_shape(spec: dict[str, Any]) -> str | None:
    """The split pattern if tokenizer.json describes a tiktoken-equivalent tokenizer, else None."""
    model, pre, norm = spec.get("model") or {}, spec.get("pre_tokenizer") or {}, spec.get("normalizer")
    if model.get("type") != "BPE" or model.get("byte_fallback") or model.get("dropout"):
        return None
    if norm not in (None, {"type": "NFC"}):
        return None
    steps = pre.get("pretokenizers") or []
    if (
        len(steps) != 2
        or steps[0].get("type") != "Split"
        or steps[0].get("behavior") != "Isolated"
        or steps[0].get("invert")
        or steps[1].get("type") != "ByteLevel"
        or steps[1].get("use_regex")
        or steps[1].get("add_prefix_space")
    ):
        return None
    vocab, merges = model["vocab"], model.get("merges") or []
    last = -1
    for merge in merges:  # tiktoken merges by the rank of the result: the merge order must follow the ids
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank = vocab.get(left + right)
        if rank is None or rank <= last:
            return None
        last = rank
    return steps[0].get("pattern", {}).get("Regex")


def _tiktoken_encoder(spec: dict[str, Any], pattern: str) -> Encoder:
    import tiktoken

    decode = _byte_decoder()
    ranks = {bytes(decode[c] for c in token): rank for token, rank in spec["model"]["vocab"].items()}
    # Every added token (special or not) is matched whole in running text, as the slow tokenizer's split does.
    added = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    enc = tiktoken.Encoding("qwen-acceptance", pat_str=pattern, mergeable_ranks=ranks, special_tokens=added)
    nfc = spec.get("normalizer") == {"type": "NFC"}

    def encode_batch(texts: list[str]) -> list[list[int]]:
        return [enc.encode(unicodedata.normalize("NFC", t) if nfc else t, allowed_special="all") for t in texts]

    return Encoder("tiktoken", encode_batch)


def _hf_encoder(tokenizer_dir: Path) -> Encoder:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), use_fast=True)
    # The slow tokenizer normalises with Python's unicodedata; the Rust NFC does not reorder combining marks that
    # are out of canonical order (U+07F3 before U+07FD, seen in real source text), so normalise here first.
    nfc = (_spec(tokenizer_dir) or {}).get("normalizer") == {"type": "NFC"}

    def encode_batch(texts: list[str]) -> list[list[int]]:
        if nfc:
            texts = [unicodedata.normalize("NFC", t) for t in texts]
        return tok(texts, add_special_tokens=False)["input_ids"] if texts else []

    return Encoder("hf-fast", encode_batch)


def _spec(tokenizer_dir: Path) -> dict[str, Any] | None:
    path = tokenizer_dir / "tokenizer.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def vocabulary(tokenizer_dir: Path) -> tuple[int, int | None]:
    """``len(tokenizer)`` (NeMo's vocab_size, which picks the output dtype) and the eos id, as the Hugging Face
    tokenizer has them. Read from tokenizer.json by the Rust library in half a second where the files name every
    special token already in it; otherwise from the Hugging Face tokenizer itself (seconds of imports and loading)."""
    config_path = tokenizer_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if (tokenizer_dir / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        rust = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        named = [t.get("content") for t in (config.get("added_tokens_decoder") or {}).values()]
        specials = {k: config.get(k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        specials = {k: v.get("content") if isinstance(v, dict) else v for k, v in specials.items()}
        if not (tokenizer_dir / "special_tokens_map.json").exists() and all(
            rust.token_to_id(t) is not None for t in [*named, *specials.values()] if t
        ):  # nothing the Hugging Face tokenizer would add on loading
            eos = specials["eos_token"]
            return rust.get_vocab_size(with_added_tokens=True), rust.token_to_id(eos) if eos else None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), use_fast=True)
    return len(tokenizer), tokenizer.eos_token_id


def choose(tokenizer_dir: Path, prefer: str = "auto") -> str:
    """The fastest encoder that gives the reference ids for this tokenizer (``prefer``: auto, tiktoken, hf-fast)."""
    if prefer not in ("auto", "tiktoken", "hf-fast"):
        raise ValueError(f"unknown encoder {prefer!r}: choose auto, tiktoken or hf-fast")
    if prefer == "hf-fast":
        return prefer
    spec = _spec(tokenizer_dir)
    if spec is not None and _tiktoken_shape(spec) is not None:
        return "tiktoken"
    if prefer == "tiktoken":
        raise ValueError(f"{tokenizer_dir}: not a tokenizer that tiktoken reproduces exactly")
    return "hf-fast"


def load(tokenizer_dir: Path, name: str) -> Encoder:
    """Build the encoder ``choose`` picked."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core per worker
    if name == "tiktoken":
        spec = _spec(tokenizer_dir)
        assert spec is not None
        return _tiktoken_encoder(spec, _tiktoken_shape(spec) or "")
    return _hf_encoder(tokenizer_dir)
