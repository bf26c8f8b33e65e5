"""Data: the reference's preprocessing (JSON lines -> Megatron indexed ``.bin/.idx``, byte-identical to NeMo's
``preprocess_data_for_megatron.py``) and where its inputs come from.

- ``preprocess``: ``build(Options) -> Report``, workers in input order, temporary names renamed when complete;
- ``encoders``: the tokenizer's ids, by tiktoken where it is exact, else Hugging Face's fast tokenizer;
- ``sources``: paths, ``hf://`` inputs, hub ids and the bundled Qwen3 tokenizer and corpus (``corpus/``);
- ``cache``: ``ensure_dataset``: a preprocessed corpus keyed by content, tokenizer and options, built once.

Submodules are imported on use (``preprocess`` needs numpy and the ``[data]`` extra).
"""

__all__ = ["cache", "encoders", "preprocess", "sources"]
