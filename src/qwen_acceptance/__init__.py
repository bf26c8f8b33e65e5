"""qwen-acceptance: prove that a cluster pretrains Qwen with NeMo as well as the reference."""

__version__ = "0.1.0"
