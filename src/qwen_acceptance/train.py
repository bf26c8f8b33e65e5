"""``python -m qwen_acceptance.train MODEL ...``: the per-rank training entry under the name that launch commands
(and every recorded ``command.sh``) use; it lives in ``run/train.py``."""

from qwen_acceptance.run.train import main

if __name__ == "__main__":
    main()
