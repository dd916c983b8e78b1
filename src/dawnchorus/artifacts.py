"""Writing and reading the small result files (JSON, CSV, model bytes) every stage produces.

Every writer is atomic: it writes a temporary file beside the target and renames it, so a reader
(another job, a user's script, a resumed run) never sees a half-written file, and a job killed
mid-write leaves the previous version or nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd


def _temporary_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bytes(path: str | Path, content: bytes) -> None:
    path = Path(path)
    temporary = _temporary_beside(path)
    temporary.write_bytes(content)
    os.replace(temporary, path)


def write_json(path: str | Path, payload: Mapping, sort_keys: bool = True) -> None:
    write_bytes(path, (json.dumps(payload, indent=2, sort_keys=sort_keys) + "\n").encode())


def read_json(path: str | Path) -> dict:
    """A JSON file another job wrote (a missing or broken one is an error, not an empty result)."""
    return json.loads(Path(path).read_text())


def read_json_or_empty(path: str | Path) -> dict:
    """A JSON object from `path`, or {} when the file is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """A table (probabilities, problems, per-class scores) to CSV, with enough digits to keep
    probabilities' order, and so every AUC computed from the file, exact."""
    path = Path(path)
    temporary = _temporary_beside(path)
    table.to_csv(temporary, index=False, float_format="%.9g", lineterminator="\n")
    os.replace(temporary, path)
