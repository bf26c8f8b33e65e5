"""Preprocessing: the real Qwen3 tokenizer's ids, files read back by Megatron-Core, an independent writer, bad input,
interrupts and concurrent builders, all with real processes."""

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from qwen_acceptance.data import cache, encoders, preprocess, sources
from qwen_acceptance.errors import AcceptanceError

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sources.resolve_input(sources.BUNDLED_CORPUS)
TRICKY = [
    "Hello world!",
    "",
    "   ",
    "<|endoftext|> special tokens in running text <|im_start|>user",
    "Café, naïve, e\u0301 (combining), ﬁ ligature, ２ full-width, Ω vs \u2126",
    "emoji 👩‍🔬🚀 and CJK 漢字かなカナ 한국어",
    "tabs\tand\r\nCRLF\rCR\u2028LS",
    "x" * 5000,
    "def f(a, b):\n    return a ** b  # code\n",
    # Combining marks out of canonical order (from an identifier regex in site-packages): NFC reorders them in the
    # slow tokenizer, the Rust normaliser (transformers 5's path, the hf-fast encoder's) left them as they were.
    'r"[\\w\u07eb-\u07f3\u07fd\u0816-\u0819]"',
]


def corpus_texts():
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle]


@pytest.fixture(scope="module")
def slow_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(sources.bundled_qwen3_dir()), use_fast=False)


def reference_ids(tokenizer, text):
    """NeMo's AutoTokenizer.text_to_ids: tokenize, then convert_tokens_to_ids, no special tokens added."""
    return tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))


def write_jsonl(path, docs, key="text"):
    path.write_text("".join(json.dumps({key: d}) + "\n" for d in docs))
    return path


def run_cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "qwen_acceptance.cli", "preprocess", *map(str, args)],
        capture_output=True,
        text=True,
        **kw,
    )


def test_bundled_tokenizer_is_real_qwen3(slow_tokenizer):
    assert reference_ids(slow_tokenizer, "Hello world!") == [9707, 1879, 0]
    assert len(slow_tokenizer) == 151669 and slow_tokenizer.eos_token_id == 151645


@pytest.mark.parametrize("name", ["tiktoken", "hf-fast"])
def test_encoder_ids_equal_nemo_slow_ids_on_real_text(slow_tokenizer, name):
    encoder = encoders.load(sources.bundled_qwen3_dir(), name)
    texts = corpus_texts() + TRICKY + ["<think>reasoning</think><tool_call>{}</tool_call>"]
    for text, ids in zip(texts, encoder.encode_batch(texts), strict=True):
        assert ids == reference_ids(slow_tokenizer, text), text[:60]


@pytest.mark.parametrize("name", sorted(sources.BUNDLED_TOKENIZERS))
def test_vocabulary_size_and_eos_match_the_slow_tokenizer(name, tmp_path):
    """The dtype and the eod come from the Rust library's reading of tokenizer.json, or from the Hugging Face
    tokenizer where the files hold a special token that tokenizer.json lacks: both equal NeMo's tokenizer."""
    from transformers import AutoTokenizer

    folder = sources.bundled_tokenizer_dir(name)
    slow = AutoTokenizer.from_pretrained(str(folder), use_fast=False)  # NeMo's default
    assert encoders.vocabulary(folder) == (len(slow), slow.eos_token_id)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / file).write_bytes((folder / file).read_bytes())
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["pad_token"] = "<|qa-pad|>"  # in no file of the vocabulary: the Hugging Face tokenizer adds it
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    padded = AutoTokenizer.from_pretrained(str(tmp_path), use_fast=True)
    assert encoders.vocabulary(tmp_path) == (len(padded), padded.eos_token_id) == (len(slow) + 1, slow.eos_token_id)


def test_encoder_choice_falls_back_when_tiktoken_would_differ(tmp_path):
    assert encoders.choose(sources.bundled_qwen3_dir()) == "tiktoken"
    spec = json.loads((sources.bundled_qwen3_dir() / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "NFKC"}  # tiktoken here would not normalise the same way
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    assert encoders.choose(tmp_path) == "hf-fast"
    with pytest.raises(ValueError, match="not a tokenizer that tiktoken reproduces exactly"):
        encoders.choose(tmp_path, "tiktoken")


def test_files_read_back_by_megatron_core(tmp_path, slow_tokenizer):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    docs = ["first document", "", "second <|endoftext|> document", "third\n\nwith lines"]
    report = preprocess.build(
        preprocess.Options(
            write_jsonl(tmp_path / "in.jsonl", docs), tmp_path / "out", sources.BUNDLED_QWEN3, workers=2, progress=False
        )
    )
    dataset = IndexedDataset(str(tmp_path / "out_text_document"))
    kept = [d for d in docs if d]  # NeMo leaves out documents that tokenize to nothing
    assert len(dataset) == len(kept) and report.documents == 3 and report.empty_documents == 1
    assert list(dataset.document_indices) == list(range(len(kept) + 1))  # one sequence per document
    # The reader/writer's own CPU time is measured, so a user can tell whether more workers would help.
    assert report.parent_cpu_seconds > 0 and "busy" in report.summary()
    for i, text in enumerate(kept):
        assert dataset[i].dtype == np.int32
        assert dataset[i].tolist() == reference_ids(slow_tokenizer, text)  # no eod: the reference has none


def test_append_eod(tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    preprocess.build(
        preprocess.Options(
            write_jsonl(tmp_path / "in.jsonl", ["a b", "c"]),
            tmp_path / "out",
            sources.BUNDLED_QWEN3,
            append_eod=True,
            progress=False,
        )
    )
    dataset = IndexedDataset(str(tmp_path / "out_text_document"))
    assert [dataset[i][-1] for i in range(2)] == [151645, 151645]


def test_byte_identical_to_modelopt_writer(tmp_path):
    """nvidia-modelopt's megatron_preprocess_data is an independent writer of the same format."""
    from modelopt.torch.utils.plugins.megatron_preprocess_data import megatron_preprocess_data

    plain = tmp_path / "corpus.jsonl"
    plain.write_bytes(gzip.decompress(CORPUS.read_bytes()))
    ours = tmp_path / "ours"
    run_cli(
        "--input",
        CORPUS,
        "--tokenizer-type",
        sources.BUNDLED_QWEN3,
        "--output-prefix",
        ours / "corpus",
        "--workers",
        "2",
        "--append-eod",
        "--no-progress",
        check=True,
    )
    theirs = tmp_path / "theirs"
    megatron_preprocess_data(
        input_path=str(plain),
        output_dir=str(theirs),
        tokenizer_name_or_path=str(sources.bundled_qwen3_dir()),
        json_keys=["text"],
        append_eod=True,
        workers=1,
    )
    for suffix in (".bin", ".idx"):
        (other,) = theirs.glob(f"*{suffix}")
        assert (ours / f"corpus_text_document{suffix}").read_bytes() == other.read_bytes()


def test_order_kept_across_workers_and_encoders(tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    docs = [f"document number {i} " * (1 + i % 7) for i in range(1200)]  # several batches per worker
    preprocess.build(
        preprocess.Options(
            write_jsonl(tmp_path / "in.jsonl", docs), tmp_path / "w3", sources.BUNDLED_QWEN3, workers=3, progress=False
        )
    )
    preprocess.build(
        preprocess.Options(
            write_jsonl(tmp_path / "in.jsonl", docs),
            tmp_path / "w1",
            sources.BUNDLED_QWEN3,
            workers=1,
            progress=False,
            encoder="hf-fast",
        )
    )
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"w3_text_document{suffix}").read_bytes() == (
            tmp_path / f"w1_text_document{suffix}"
        ).read_bytes()
    assert len(IndexedDataset(str(tmp_path / "w3_text_document"))) == 1200


BAD_LINES = [
    (b'{"text": "ok"}\n{"text": "broken\n', 2, "malformed JSON"),
    (b'{"text": "ok"}\n{"txt": "x"}\n', 2, "missing key 'text'"),
    (b'{"text": 42}\n', 1, "key 'text' is int, not a string"),
    (b'{"text": "ok"}\n{"text": "\xff\xfe"}\n', 2, "invalid UTF-8"),
    (b'{"text": "ok"}\n\n{"text": "ok"}\n', 2, "empty line"),
    (b'["text"]\n', 1, "expected a JSON object"),
]


@pytest.mark.parametrize("content, line, reason", BAD_LINES)
def test_bad_line_names_file_and_line(tmp_path, content, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    out = run_cli(
        "--input", path, "--tokenizer-type", sources.BUNDLED_QWEN3, "--output-prefix", tmp_path / "o", "--no-progress"
    )
    assert out.returncode == 2
    assert f"bad.jsonl:{line}: {reason}" in out.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]  # nothing half-written left


def test_plain_input_read_by_workers_agrees_with_gzip_read_by_the_parent(tmp_path):
    """A plain file is cut into byte ranges that the workers read, a gzip one into lines the parent reads: the
    same 4 MB (several ranges, CRLF lines, bad lines in different ranges) gives the same files and line numbers."""
    lines = [json.dumps({"text": f"line {i}: " + "word " * (i % 300)}).encode() for i in range(6000)]
    bad = {1: b"not json", 2500: b"", 5999: b'{"text": 5}'}  # 0-based: in the first, a middle and the last range
    for i, raw in bad.items():
        lines[i] = raw
    lines[7] += b"\r"
    content = b"\n".join(lines) + b"\n"
    assert len(content) > 3 * preprocess._CHUNK_BYTES
    plain, packed = tmp_path / "in.jsonl", tmp_path / "in.jsonl.gz"
    plain.write_bytes(content)
    packed.write_bytes(gzip.compress(content))
    reports = {
        name: preprocess.build(
            preprocess.Options(
                path, tmp_path / name, sources.BUNDLED_QWEN3, workers=2, skip_invalid=True, progress=False
            )
        )
        for name, path in (("plain", plain), ("gzip", packed))
    }
    for report in reports.values():
        assert [n for n, _ in report.skipped_lines] == [i + 1 for i in sorted(bad)]
        assert report.documents == 6000 - len(bad)
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"plain_text_document{suffix}").read_bytes() == (
            tmp_path / f"gzip_text_document{suffix}"
        ).read_bytes()
    strict = tmp_path / "strict.jsonl"  # the first bad line in a middle range: named by its number in the file
    strict.write_bytes(content.replace(b"\nnot json\n", b'\n{"text": "fixed"}\n', 1))
    with pytest.raises(AcceptanceError, match=r"strict\.jsonl:2501: empty line"):
        preprocess.build(preprocess.Options(strict, tmp_path / "strict", sources.BUNDLED_QWEN3, progress=False))
    assert not list(tmp_path.glob("strict_*"))


def test_the_window_holds_the_feeder_until_a_job_is_written():
    """The jobs handed to the pool and not yet written stay within the window, so workers faster than the writer
    cannot pile their results up in its memory; closing it lets a waiting feeder end (the pool's terminate)."""
    window, fed = preprocess._Window(3), []

    def feed():
        for job in window.feed(iter(range(10))):
            fed.append(job)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()

    def settled(n):
        deadline = time.monotonic() + 10
        while len(fed) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # room for a job too many to show up
        return len(fed)

    assert settled(3) == 3
    window.written()
    assert settled(4) == 4
    window.close()
    feeder.join(10)
    assert not feeder.is_alive() and fed == [0, 1, 2, 3]


def test_skip_invalid_counts_and_reports(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "one"}\n{"text": 1}\n\n{"text": "two"}\nnot json\n')
    report = preprocess.build(
        preprocess.Options(path, tmp_path / "o", sources.BUNDLED_QWEN3, skip_invalid=True, progress=False)
    )
    assert report.documents == 2 and [n for n, _ in report.skipped_lines] == [2, 3, 5]
    assert "3 invalid lines skipped" in report.summary() and "skipped line 5: malformed JSON" in report.summary()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_leaves_no_dataset(tmp_path, sig):
    """Ctrl-C or a scheduler's SIGTERM mid-way: nothing at the output prefix, no temporary file, and no traceback
    from every worker (only the parent handles it)."""
    big = tmp_path / "big.jsonl"
    texts = corpus_texts()
    with big.open("w") as handle:
        for _ in range(40):
            handle.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qwen_acceptance.cli",
            "preprocess",
            "--input",
            str(big),
            "--tokenizer-type",
            sources.BUNDLED_QWEN3,
            "--output-prefix",
            str(tmp_path / "o"),
            "--no-progress",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".o_text_document.bin.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.1)  # wait until it is writing
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jsonl"]
    assert "Traceback" not in err, err  # not from the workers, and not from the parent either
    assert proc.returncode == (130 if sig == signal.SIGINT else 128 + signal.SIGTERM)


def _bad_inputs(tmp):
    """Each case: the input file, extra options, and the one line it must give."""
    good = write_jsonl(tmp / "good.jsonl", ["some text"])
    random_text = [" ".join(str(i * 7919 % 104729) for i in range(n, n + 60)) for n in range(0, 60000, 60)]
    whole = tmp / "whole.jsonl.gz"
    with gzip.open(whole, "wt") as handle:
        handle.writelines(json.dumps({"text": t}) + "\n" for t in random_text)
    (tmp / "cut.jsonl.gz").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # a cut download
    (tmp / "plain.jsonl.gz").write_text('{"text": "not gzip"}\n')
    (tmp / "surrogate.jsonl").write_text('{"text": "bad \\ud800 here"}\n')
    (tmp / "empty.jsonl").write_text("")
    (tmp / "junk.jsonl").write_text("junk\n")
    (tmp / "a-file").write_text("")
    return {
        "cut gzip": (tmp / "cut.jsonl.gz", [], "cut.jsonl.gz: cannot read it as gzip at line "),
        "not gzip": (tmp / "plain.jsonl.gz", [], "plain.jsonl.gz: cannot read it as gzip at line 1"),
        "unwritable folder": (good, ["--output-prefix", "/sys/x"], "--output-prefix /sys/x: "),
        "prefix under a file": (good, ["--output-prefix", tmp / "a-file/x"], "cannot create the folder"),
        "key with a slash": (good, ["--json-keys", "a/b"], "--json-keys 'a/b': a key names the output file too"),
        "key twice": (good, ["--json-keys", "text", "text"], "a key given twice would write every document twice"),
        "lone surrogate, hf-fast": (
            tmp / "surrogate.jsonl",
            ["--encoder", "hf-fast"],
            "surrogate.jsonl:1: key 'text' holds a lone surrogate (\\ud800)",
        ),
        "lone surrogate, default": (tmp / "surrogate.jsonl", [], "surrogate.jsonl:1: key 'text' holds a lone"),
        "empty input": (tmp / "empty.jsonl", [], "empty.jsonl: no document to write (0 empty)"),
        "every line skipped": (tmp / "junk.jsonl", ["--skip-invalid"], "no document to write (0 empty; 1 invalid"),
        "empty prefix": (good, ["--output-prefix", ""], "--output-prefix '.': must name a file prefix"),
        "a folder as input": (tmp, [], ": is a directory; --input takes a .jsonl or .jsonl.gz file"),
        "no workers": (good, ["--workers", "0"], "argument --workers: must be at least 1, got 0"),
    }


BAD = [  # the cases of _bad_inputs
    "cut gzip",
    "not gzip",
    "unwritable folder",
    "prefix under a file",
    "key with a slash",
    "key twice",
    "lone surrogate, hf-fast",
    "lone surrogate, default",
    "empty input",
    "every line skipped",
    "empty prefix",
    "a folder as input",
    "no workers",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, case):
    """Each: exit 2, one line naming the input or option (as NeMo's slow tokenizer does, a lone surrogate is an
    error naming the line), and no dataset or temporary file left behind."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    path, extra, message = _bad_inputs(inputs)[case]
    before = {p.name for p in inputs.iterdir()}
    prefix = [] if "--output-prefix" in extra else ["--output-prefix", tmp_path / "out" / "o"]
    out = run_cli(
        "--input", path, "--tokenizer-type", sources.BUNDLED_QWEN3, "--no-progress", *prefix, *extra, cwd=tmp_path
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
    assert {p.name for p in inputs.iterdir()} == before
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != inputs]


def test_more_workers_than_cpus_is_said(tmp_path):
    out = run_cli(
        "--input",
        write_jsonl(tmp_path / "in.jsonl", ["a b"]),
        "--tokenizer-type",
        sources.BUNDLED_QWEN3,
        "--output-prefix",
        tmp_path / "o",
        "--no-progress",
        "--workers",
        str((os.cpu_count() or 1) + 1),
    )
    assert out.returncode == 0 and "qwen-acceptance: warning: --workers" in out.stderr
    assert "more workers than CPUs add memory, not speed" in out.stderr


def test_missing_input_and_offline_hub(tmp_path, monkeypatch):
    out = run_cli(
        "--input",
        tmp_path / "none.jsonl",
        "--tokenizer-type",
        sources.BUNDLED_QWEN3,
        "--output-prefix",
        tmp_path / "o",
        "--no-progress",
    )
    assert out.returncode == 2 and "none.jsonl: no such input file" in out.stderr
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        AcceptanceError,
        match=r"Qwen/Qwen3-8B: cannot download .*\(preprocess --tokenizer-type DIR; launch, bench and pytest "
        r"--tokenizer DIR\)",
    ):
        sources.resolve_tokenizer("Qwen/Qwen3-8B")
    with pytest.raises(AcceptanceError, match="arxiv_sample.jsonl of the dataset togethercomputer"):
        sources.resolve_input("hf://datasets/togethercomputer/RedPajama-Data-1T-Sample/arxiv_sample.jsonl")


ENSURE = (
    "import json, sys; from pathlib import Path; from qwen_acceptance.data import cache; "
    "d = cache.ensure_dataset(Path(sys.argv[1]), 'bundled:qwen3', Path(sys.argv[2]), progress=False); "
    "print(json.dumps({'prefix': str(d.prefix), 'built': d.built}))"
)


def _ensure(corpus, cache_dir):
    return cache.ensure_dataset(corpus, sources.BUNDLED_QWEN3, cache_dir, progress=False)


def test_dataset_cache_concurrent_builders(tmp_path):
    """Three real processes ask at once: one builds, the others wait and reuse the same files."""
    procs = [
        subprocess.Popen([sys.executable, "-c", ENSURE, str(CORPUS), str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert sorted(r["built"] for r in results) == [False, False, True]
    assert len({r["prefix"] for r in results}) == 1
    again = _ensure(CORPUS, tmp_path)
    assert not again.built and str(again.prefix) == results[0]["prefix"]
    assert Path(str(again.prefix) + ".idx").is_file()


def test_dataset_cache_never_reuses_a_dead_build(tmp_path):
    first = _ensure(CORPUS, tmp_path)
    (first.prefix.parent / "COMPLETE").unlink()  # as if the build had died before finishing
    assert _ensure(CORPUS, tmp_path).built
