"""Turn a JSON-lines corpus into Megatron indexed files (``<prefix>_<key>_document.bin/.idx``), byte-identical
to NeMo 2.5's ``preprocess_data_for_megatron.py`` with the same flags.

NeMo's script, as the reference runs it: one sequence per document, input order, no end-of-document token unless
``--append-eod``, documents that tokenize to nothing left out, ``tokenize`` + ``convert_tokens_to_ids`` of the slow
Hugging Face tokenizer (no special tokens added), and int32 tokens once the vocabulary (``len(tokenizer)``) reaches
65500. Here a faster encoder does the work (`encoders`), one core per worker; the tests prove its ids equal the
slow tokenizer's on real text. The input is streamed (constant memory), the output written under temporary names
and renamed only when complete.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import signal
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy

from qwen_acceptance.data import encoders
from qwen_acceptance.data.sources import resolve_tokenizer
from qwen_acceptance.errors import AcceptanceError

_CHUNK_BYTES = 1 << 20  # a job: whole lines of about this size (a plain input's read by the worker itself)
_JOBS_PER_WORKER = 4  # in flight, not yet written: bounds what the writer holds when the workers outrun it
# A job: (path, first byte, end byte) of whole lines for the worker to read, or the lines the parent read.
_Job = tuple[tuple[str, int, int] | list[bytes], tuple[str, ...]]


@dataclass(frozen=True)
class Options:
    input: Path
    output_prefix: Path
    tokenizer: str
    json_keys: tuple[str, ...] = ("text",)
    workers: int = 1
    append_eod: bool = False
    skip_invalid: bool = False
    progress: bool = True
    encoder: str = "auto"  # auto, tiktoken or hf-fast (see encoders.load)


@dataclass
class Report:
    """What a run did; printed as the summary at the end."""

    outputs: dict[str, Path] = field(default_factory=dict)
    documents: int = 0
    tokens: int = 0
    empty_documents: int = 0
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0
    startup_seconds: float = 0.0  # workers started, the tokenizer read, Megatron-Core imported: before any line
    parent_cpu_seconds: float = 0.0  # the one reading and writing process, after the start-up
    encoder: str = ""

    @property
    def steady_seconds(self) -> float:
        """The time after the start-up: what grows with the corpus."""
        return self.seconds - self.startup_seconds

    @property
    def parent_busy(self) -> float:
        """The share of the steady time the reader/writer was busy: more workers help while it is well below 1."""
        return self.parent_cpu_seconds / self.steady_seconds if self.steady_seconds > 0 else 0.0

    def summary(self) -> str:
        rate = self.tokens / self.steady_seconds if self.steady_seconds > 0 else 0.0
        text = (
            f"{self.documents} documents, {self.tokens} tokens, {len(self.skipped_lines)} invalid lines skipped, "
            f"{self.empty_documents} empty documents left out, {self.seconds:.1f} s ({self.startup_seconds:.1f} s "
            f"start-up, then {rate:,.0f} tokens/s, {self.encoder} encoder; the reading and writing process busy "
            f"{self.parent_busy:.0%} of that time)"
        )
        return text + "".join(f"\n  skipped line {n}: {why}" for n, why in self.skipped_lines[:20])


def output_paths(prefix: Path, key: str) -> tuple[Path, Path]:
    stem = f"{prefix}_{key}_document"
    return Path(stem + ".bin"), Path(stem + ".idx")


# --- workers -----------------------------------------------------------------------------------------------------

_ENCODER: Any = None


def _init_worker(tokenizer_dir: str, encoder: str) -> None:
    """Load the encoder; Ctrl-C is the parent's to handle (it ends the pool), not a traceback from every worker."""
    global _ENCODER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _ENCODER = encoders.load(Path(tokenizer_dir), encoder)


def _decode_line(raw: bytes, keys: Sequence[str]) -> list[str]:
    """The texts of one JSON line, or ValueError saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid UTF-8 at byte {exc.start}") from None
    if not text.strip():
        raise ValueError("empty line")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    texts = []
    for key in keys:
        if key not in doc:
            raise ValueError(f"missing key '{key}'")
        if not isinstance(doc[key], str):
            raise ValueError(f"key '{key}' is {type(doc[key]).__name__}, not a string")
        try:  # a JSON escape such as \\ud800 alone is no character: NeMo's slow tokenizer fails on it too
            doc[key].encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"key '{key}' holds a lone surrogate (\\u{ord(exc.object[exc.start]):04x}) at "
                f"character {exc.start}: not text"
            ) from None
        texts.append(doc[key])
    return texts


def _read_lines(path: str, start: int, end: int) -> list[bytes]:
    """The lines of bytes ``start`` to ``end`` (which fall on line ends), read here so the parent never holds them."""
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read(end - start)
    except OSError as exc:
        raise AcceptanceError(f"{path}: cannot read input at byte {start}: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    if not lines[-1]:  # the range ends with a newline: nothing after it
        lines.pop()
    return lines


def _encode_batch(job: _Job) -> tuple[int, int | None, list[list[Any] | str]]:
    """The job's line count, the byte it read to (None for lines the parent read: the parent knows where it is)
    and, per line, the ids of each key's text (int32 arrays: cheap to send back) or why the line is invalid."""
    source, keys = job
    lines, end = (_read_lines(*source), source[2]) if isinstance(source, tuple) else (source, None)
    results: list[list[Any] | str] = []
    texts: list[str] = []
    for raw in lines:
        try:
            texts.extend(_decode_line(raw.rstrip(b"\r"), keys))
            results.append([])
        except ValueError as exc:
            results.append(str(exc))
    encoded = iter(_ENCODER.encode_batch(texts))
    for ids in results:
        if isinstance(ids, list):
            ids.extend(numpy.asarray(next(encoded), dtype=numpy.int32) for _ in keys)
    return len(lines), end, results


# --- reading and writing -----------------------------------------------------------------------------------------


def _open(path: Path) -> IO[bytes]:
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    except FileNotFoundError:
        raise AcceptanceError(f"{path}: no such input file") from None
    except OSError as exc:
        raise AcceptanceError(f"{path}: cannot read input: {exc.strerror}") from None


def _jobs(path: Path, handle: IO[bytes], keys: tuple[str, ...]) -> Iterator[_Job]:
    """The workers' jobs in input order: byte ranges of whole lines of a plain file, which the workers read
    themselves (the parent only seeks to each range's last line end), or the lines of a gzip file."""
    if not isinstance(handle, gzip.GzipFile):
        size, start = os.fstat(handle.fileno()).st_size, 0
        while start < size:
            try:
                handle.seek(start + _CHUNK_BYTES)
                handle.readline()
            except OSError as exc:
                raise AcceptanceError(f"{path}: cannot read input after byte {start}: {exc.strerror or exc}") from None
            end = min(handle.tell(), size)
            yield (str(path), start, end), keys
            start = end
        return
    batch: list[bytes] = []
    number = size = 0
    try:
        for raw in handle:
            number += 1  # the line being read, named if reading it fails
            batch.append(raw.rstrip(b"\n"))
            size += len(raw)
            if size >= _CHUNK_BYTES:
                yield batch, keys
                batch, size = [], 0
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # a cut download, or not gzip at all
        raise AcceptanceError(
            f"{path}: cannot read it as gzip at line {number + 1} (cut short, or not gzip): {exc}"
        ) from None
    except OSError as exc:
        raise AcceptanceError(f"{path}: cannot read input at line {number + 1}: {exc.strerror or exc}") from None
    if batch:
        yield batch, keys


class _Window:
    """At most ``size`` jobs handed to the pool and not yet written. The workers can outrun the one writer (at many
    workers), and their results would pile up in its memory; this keeps them to ``size`` jobs of about
    ``_CHUNK_BYTES`` of input and their tokens."""

    def __init__(self, size: int) -> None:
        self._free = threading.Semaphore(size)
        self._closed = False

    def feed(self, jobs: Iterator[_Job]) -> Iterator[_Job]:
        for job in jobs:
            self._free.acquire()
            if self._closed:
                return
            yield job

    def written(self) -> None:
        self._free.release()

    def close(self) -> None:
        """Let a feeder waiting for room stop (the pool's task thread must end for ``terminate`` to return)."""
        self._closed = True
        self._free.release()


class _Progress:
    """Documents/s, tokens/s and an ETA from the bytes read (the corpus is streamed, its line count unknown)."""

    def __init__(self, path: Path, handle: IO[bytes], enabled: bool) -> None:
        self._raw = getattr(handle, "fileobj", None) or handle  # gzip: position in the compressed file
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=path.stat().st_size,
                unit="B",
                unit_scale=True,
                desc=f"preprocess {path.name}",
                mininterval=1.0,
                smoothing=0.1,
            )
        self._start = time.monotonic()

    def update(self, report: Report, position: int | None) -> None:
        """``position``: the byte the workers' finished jobs reached, or None to ask the file (the gzip path)."""
        if self._bar is None:
            return
        elapsed = max(time.monotonic() - self._start, 1e-9)
        self._bar.n = self._raw.tell() if position is None else position
        self._bar.set_postfix_str(
            f"{report.documents / elapsed:,.0f} docs/s, {report.tokens / elapsed:,.0f} tok/s", refresh=False
        )
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def check_options(options: Options) -> None:
    """What can be refused before any tokenizer loads or worker starts, each naming the option."""
    if options.input.is_dir():
        raise AcceptanceError(f"{options.input}: is a directory; --input takes a .jsonl or .jsonl.gz file")
    if not options.input.is_file():
        raise AcceptanceError(f"{options.input}: no such input file")
    prefix = str(options.output_prefix)
    if not options.output_prefix.name or prefix.endswith(("/", ".")):
        raise AcceptanceError(f"--output-prefix {prefix!r}: must name a file prefix (e.g. data/arxiv_sample)")
    for key in options.json_keys:
        if not key or "/" in key or "\0" in key:
            raise AcceptanceError(
                f"--json-keys {key!r}: a key names the output file too, so it must be non-empty and hold no '/'"
            )
    if len(set(options.json_keys)) != len(options.json_keys):
        raise AcceptanceError(
            f"--json-keys {' '.join(options.json_keys)}: a key given twice would write every document twice"
        )
    parent = options.output_prefix.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AcceptanceError(
            f"--output-prefix {prefix}: cannot create the folder {parent}: {exc.strerror or exc}"
        ) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AcceptanceError(f"--output-prefix {prefix}: the folder {parent} is not writable")


def build(options: Options) -> Report:
    """Preprocess ``options.input``; on any error, interrupt or SIGTERM nothing is left at the output prefix."""
    check_options(options)
    tokenizer_dir = resolve_tokenizer(options.tokenizer)
    report = Report()
    pid = os.getpid()
    targets = {key: output_paths(options.output_prefix, key) for key in options.json_keys}
    temps = {
        key: (bin_.with_name(f".{bin_.name}.{pid}.tmp"), idx.with_name(f".{idx.name}.{pid}.tmp"))
        for key, (bin_, idx) in targets.items()
    }
    start = time.monotonic()
    try:
        report.encoder = encoders.choose(tokenizer_dir, options.encoder)
    except ValueError as exc:
        raise AcceptanceError(str(exc)) from None
    # spawn, not fork: the caller may be multi-threaded (pytest, a launcher), and a forked child can inherit a
    # lock some other thread held. The pool starts first: its workers load their encoders (and one reads the
    # vocabulary's size) while this process imports Megatron-Core, the serial part of the start-up (BENCHMARKS.md).
    pool = multiprocessing.get_context("spawn").Pool(
        options.workers, _init_worker, (str(tokenizer_dir), report.encoder)
    )
    vocabulary = pool.apply_async(encoders.vocabulary, (tokenizer_dir,))
    window = _Window(_JOBS_PER_WORKER * options.workers)
    stop_on_sigterm = _sigterm_raises()
    try:
        import torch

        with warnings.catch_warnings():  # Megatron-Core's notice that TE and Apex are absent: nothing to do here
            warnings.simplefilter("ignore")
            from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

        size, eod = vocabulary.get()
        if options.append_eod and eod is None:
            raise AcceptanceError(f"{options.tokenizer}: --append-eod needs an eos token, the tokenizer has none")
        dtype = DType.optimal_dtype(size)
        report.startup_seconds, cpu_start = time.monotonic() - start, time.process_time()
        try:
            builders = {key: IndexedDatasetBuilder(str(temps[key][0]), dtype=dtype) for key in options.json_keys}
        except OSError as exc:
            raise AcceptanceError(
                f"--output-prefix {options.output_prefix}: cannot write there: {exc.strerror or exc}"
            ) from None
        with _open(options.input) as handle:
            progress = _Progress(options.input, handle, options.progress)
            try:
                lines_before = 0
                for lines, position, results in pool.imap(
                    _encode_batch, window.feed(_jobs(options.input, handle, options.json_keys))
                ):
                    for number, outcome in enumerate(results, start=lines_before + 1):
                        if isinstance(outcome, str):
                            if not options.skip_invalid:
                                raise AcceptanceError(f"{options.input}:{number}: {outcome}")
                            report.skipped_lines.append((number, outcome))
                            continue
                        for key, ids in zip(options.json_keys, outcome, strict=True):
                            if not len(ids):  # NeMo leaves out documents that tokenize to nothing
                                report.empty_documents += 1
                                continue
                            if options.append_eod:
                                ids = numpy.append(ids, numpy.int32(eod))
                            builders[key].add_item(torch.from_numpy(ids))
                            builders[key].end_document()
                            report.documents += 1
                            report.tokens += len(ids)
                    lines_before += lines
                    window.written()
                    progress.update(report, position)
            finally:
                progress.close()
        pool.close()
        if not report.documents:
            skipped = f"; {len(report.skipped_lines)} invalid lines skipped" if report.skipped_lines else ""
            raise AcceptanceError(
                f"{options.input}: no document to write ({report.empty_documents} empty{skipped}): "
                "a dataset of 0 documents cannot train"
            )
        for key, builder in builders.items():
            builder.finalize(str(temps[key][1]))
        for key, (bin_, idx) in targets.items():
            os.replace(temps[key][0], bin_)
            os.replace(temps[key][1], idx)  # the index last: a dataset is there only once both are
            report.outputs[key] = options.output_prefix.parent / bin_.stem
    except BaseException:
        window.close()
        pool.terminate()
        for bin_tmp, idx_tmp in temps.values():
            bin_tmp.unlink(missing_ok=True)
            idx_tmp.unlink(missing_ok=True)
        raise
    finally:
        pool.join()
        stop_on_sigterm()
    report.seconds, report.parent_cpu_seconds = time.monotonic() - start, time.process_time() - cpu_start
    return report


def _sigterm_raises() -> Callable[[], None]:
    """Until the returned function is called, SIGTERM (a batch scheduler's stop, ``kill``) raises SystemExit in the
    main thread, so the cleanup that Ctrl-C gets runs for it too; off the main thread it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    return lambda: signal.signal(signal.SIGTERM, previous)
