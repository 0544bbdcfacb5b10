"""All of the stored-embedding benchmarks in one run: re-labelling (bench/relabel.py), search
(bench/search.py) and near-duplicates (bench/duplicates.py), one after the other, each in its
own process (so one's memory does not count in the next one's peak), with their default sizes:
100,000 and 1,000,000 rows for re-labelling, 1,000,000 for search, 100,000 for duplicates.

    python bench/embeddings.py        # about 5 minutes on 2 cores
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = ("relabel.py", "search.py", "duplicates.py")


def main() -> int:
    """Run each benchmark; the exit status of the first that fails, else 0."""
    here = Path(__file__).resolve().parent
    for name in BENCHES:
        print(f"== bench/{name}", flush=True)
        done = subprocess.run([sys.executable, str(here / name)], check=False)
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
