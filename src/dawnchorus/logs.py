"""Logging for workflow jobs: everything a job prints, C libraries included, lands in its log."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def log_to_file(path: str | Path, append: bool = False) -> Iterator[None]:
    """Send stdout and stderr (file descriptors 1 and 2) and Python logging to `path`.

    `append` keeps what an earlier, killed attempt of a resumable job wrote.

    TensorFlow and libsndfile write to the descriptors directly, below `sys.stderr`; redirecting
    the descriptors keeps their messages in the job's log instead of Snakemake's console.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    with open(path, "a" if append else "w", buffering=1, encoding="utf-8") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr, force=True)
        logging.captureWarnings(True)
        try:
            yield  # an exception's traceback reaches the log through file descriptor 2
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
