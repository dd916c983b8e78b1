"""The BirdNET head as a window model: a fold's logistic regression on pooled BirdNET embeddings,
saved as plain arrays, predicting the rows of a recording from the 3-s windows inside each row.

The head is trained on one pooled vector per training recording (`reference`); a 5-s row of a
soundscape is pooled the same way from the BirdNET windows that overlap it (`RowWindows`): by
default one grid of 3-s windows every `window_hop_s` (2.5 s) over the whole recording, or each
row's own windows starting `row_window_offsets_s` into it.

A head file (`reference/fold_{k}/head.npz`, numpy's format, no pickles) holds the arrays of
`LinearWeights` and a JSON `metadata` string: format version, fold, classes, pooling, the row
windows (`row_window_offsets_s`, `window_hop_s`), and the embedding model's file name and
sha256. Heads of one ensemble must agree on all but the fold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dawnchorus.learning.linear import LinearWeights
from dawnchorus.pretrained.embeddings import RowWindows, pool_rows

HEAD_FORMAT = 1
_ARRAYS = ("mean", "scale", "coef", "intercept")
# what two heads must share to be averaged or blended (all metadata but the fold)
_SHARED = ("classes", "pooling", "row_window_offsets_s", "window_hop_s", "embedding_sha256")


class HeadError(ValueError):
    """A head file is missing, unreadable, or does not fit the others or the embedding model."""


@dataclass(frozen=True)
class Head:
    """One fold's head: its arrays and what it was trained on."""

    weights: LinearWeights
    metadata: dict

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n, classes) probabilities of (n, pooled dim) pooled embeddings."""
        logits = self.weights.logits(features)
        return (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp.npz")
        arrays = {name: getattr(self.weights, name) for name in _ARRAYS}
        np.savez(temporary, metadata=np.array(json.dumps(self.metadata)), **arrays)
        temporary.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Head:
        path = Path(path)
        if not path.is_file():
            raise HeadError(f"{path}: head file not found (rule reference writes it)")
        try:
            with np.load(path, allow_pickle=False) as stored:
                metadata = json.loads(str(stored["metadata"]))
                weights = LinearWeights(**{name: stored[name] for name in _ARRAYS})
        except (OSError, KeyError, ValueError) as error:
            raise HeadError(f"{path}: not a head file ({error})") from None
        if metadata.get("format_version") != HEAD_FORMAT:
            raise HeadError(
                f"{path}: head format {metadata.get('format_version')}, this version reads "
                f"{HEAD_FORMAT}: rerun the reference rule"
            )
        metadata["source"] = str(path)
        # heads written before the window grid heard each row's own windows
        metadata.setdefault("window_hop_s", None)
        return cls(weights, metadata)


def head_metadata(
    fold: int,
    classes: Sequence[str],
    pooling: str,
    row_window_offsets_s: Sequence[float],
    window_hop_s: float | None,
    embedding_file: str,
    embedding_sha256: str,
) -> dict:
    return {
        "format_version": HEAD_FORMAT,
        "fold": int(fold),
        "classes": list(classes),
        "pooling": pooling,
        "row_window_offsets_s": [float(offset) for offset in row_window_offsets_s],
        "window_hop_s": None if window_hop_s is None else float(window_hop_s),
        "embedding_file": embedding_file,
        "embedding_sha256": embedding_sha256,
    }


def check_row_windows(rows: RowWindows) -> None:
    """HeadError unless these BirdNET windows hear every row."""
    if problem := rows.problem():
        raise HeadError(problem)


class HeadEnsemble:
    """Fold heads behind one call: the rows' window embeddings -> mean probabilities."""

    def __init__(self, heads: Sequence[Head]):
        if not heads:
            raise HeadError("no head given")
        first = heads[0].metadata
        for head in heads[1:]:
            for key in _SHARED:
                if head.metadata[key] != first[key]:
                    raise HeadError(
                        f"heads disagree on {key}: {first['source']} and "
                        f"{head.metadata['source']}; a blend needs heads trained together "
                        "(rerun the reference rule)"
                    )
        self.heads = list(heads)
        self.metadata = first

    @classmethod
    def load(cls, paths: Sequence[str | Path]) -> HeadEnsemble:
        return cls([Head.load(path) for path in paths])

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    def row_windows(self, row_s: float) -> RowWindows:
        """The windows through which the heads hear rows of `row_s` (as they were trained to)."""
        return RowWindows(
            row_s, tuple(self.metadata["row_window_offsets_s"]), self.metadata["window_hop_s"]
        )

    @property
    def sources(self) -> list[str]:
        return [head.metadata["source"] for head in self.heads]

    def check_embedding_model(self, sha256: str, path: str | Path) -> None:
        """HeadError unless the heads were trained on embeddings of this model file."""
        if sha256 != self.metadata["embedding_sha256"]:
            raise HeadError(
                f"the heads ({self.sources[0]}, ...) were trained on embeddings of "
                f"{self.metadata['embedding_file']} (sha256 "
                f"{self.metadata['embedding_sha256'][:12]}), not of {path} (sha256 "
                f"{sha256[:12]}): predict with the BirdNET model they were trained on"
            )

    def row_probabilities(
        self, window_embeddings: np.ndarray, row_s: float, n_rows: int
    ) -> np.ndarray:
        """(rows, classes) of a recording's first `n_rows` rows of `row_s` from the (windows,
        dim) embeddings of their `row_windows` in order: each row's windows pooled as in
        training, the fold heads' probabilities averaged."""
        if n_rows == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        features = pool_rows(
            window_embeddings, self.row_windows(row_s), n_rows, self.metadata["pooling"]
        )
        return np.mean([head.probabilities(features) for head in self.heads], axis=0)


def save_head_bundle(path: str | Path, heads: HeadEnsemble, extra: dict) -> None:
    """Every fold head in one file (the export's blend.npz): fold i's arrays as `{i}_mean` etc.,
    a JSON `metadata` with each head's metadata and `extra` (the blend's weights, BirdNET's
    checksum)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        f"{index}_{name}": getattr(head.weights, name)
        for index, head in enumerate(heads.heads)
        for name in _ARRAYS
    }
    metadata = {
        **extra,
        "heads": [
            {key: value for key, value in head.metadata.items() if key != "source"}
            for head in heads.heads
        ],
    }
    temporary = path.with_name(f".{path.name}.tmp.npz")
    np.savez(temporary, metadata=np.array(json.dumps(metadata)), **arrays)
    temporary.replace(path)


def load_head_bundle(path: str | Path) -> tuple[HeadEnsemble, dict]:
    """(the heads, the bundle's metadata) of a file `save_head_bundle` wrote."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            metadata = json.loads(str(stored["metadata"]))
            heads = [
                Head(
                    LinearWeights(**{name: stored[f"{index}_{name}"] for name in _ARRAYS}),
                    {"window_hop_s": None, **head_metadata_, "source": f"{path}[{index}]"},
                )
                for index, head_metadata_ in enumerate(metadata["heads"])
            ]
    except (OSError, KeyError, ValueError) as error:
        raise HeadError(f"{path}: not a blend bundle ({error})") from None
    return HeadEnsemble(heads), metadata
