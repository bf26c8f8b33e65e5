"""Write src/qwen_acceptance/data/corpus/python-reference.jsonl.gz: real English technical prose that nobody here wrote.

The text is the Python Language Reference's topic pages as CPython ships them (module pydoc_data.topics, PSF
License). One JSON line per topic, key "text", in sorted topic order, so the file is the same on every run of the
same Python. Usage: python scripts/make-corpus.py [OUT]
"""

import gzip
import json
import sys
from pathlib import Path
from pydoc_data.topics import topics

out = Path(sys.argv[1] if len(sys.argv) > 1 else "src/qwen_acceptance/data/corpus/python-reference.jsonl.gz")
with gzip.GzipFile(out, "wb", mtime=0) as handle:
    for name in sorted(topics):
        handle.write((json.dumps({"topic": name, "text": topics[name]}, ensure_ascii=False) + "\n").encode())
print(f"wrote {out}: {len(topics)} documents, {sum(map(len, topics.values()))} characters")
