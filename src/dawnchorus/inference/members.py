"""The members behind a prediction: the CNN's fold ensemble and, in a blend, the BirdNET head,
each predicting a recording's rows, blended with the weights of rule ensemble.

The head hears each 5-s row of the CNN through the BirdNET windows that overlap it
(`pretrained.embeddings.RowWindows`; the recording decoded again at BirdNET's 48 kHz, cut into the
same rows by the same code, so both members give the same rows of a recording that decodes).
A recording only one member can read keeps that member's rows, and its FilePrediction says so in
`notes` (the submission's problems.csv lists them).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dawnchorus.artifacts import read_json
from dawnchorus.config import AudioParams
from dawnchorus.inference.engines import Ensemble, PredictionError, load_ensemble
from dawnchorus.inference.postprocess import NO_SMOOTHING, postprocess
from dawnchorus.inference.recordings import (
    FilePrediction,
    predict_recordings,
    recording_windows,
    window_end_seconds,
)
from dawnchorus.learning.blend import BLEND_FORMAT, blend_probabilities
from dawnchorus.pretrained.embeddings import SAMPLE_RATE, EmbeddingModel, RowWindowCutter
from dawnchorus.pretrained.head import (
    HeadEnsemble,
    check_row_windows,
    load_head_bundle,
)
from dawnchorus.signal.audio import AudioError

log = logging.getLogger(__name__)


@dataclass
class HeadMember:
    """The fold heads and the BirdNET model whose embeddings they read."""

    heads: HeadEnsemble
    embedder: EmbeddingModel
    batch_size: int = 16
    files: tuple[Path, ...] = ()  # the heads' and the weights' (a prediction's run record)

    def rows(
        self, path: str | Path, params: AudioParams, min_last_window_s: float
    ) -> tuple[np.ndarray, str | None]:
        """(rows, classes) probabilities of the recording's `params.window_s` rows, and the
        decoding problem if there was one (the rows are then those before it)."""
        cutter = RowWindowCutter(self.heads.row_windows(params.window_s))
        at_48k = dataclasses.replace(params, sample_rate=SAMPLE_RATE)
        pending: list[np.ndarray] = []  # windows not embedded yet
        embedded: list[np.ndarray] = []  # (windows, dim): a long recording keeps only these
        error = None

        def embed_pending() -> None:
            if pending:
                windows = np.stack(pending)
                embedded.append(self.embedder.embed_in_batches(windows, self.batch_size))
                pending.clear()

        try:
            for row in recording_windows(path, at_48k, min_last_window_s):
                pending += cutter.add_row(row)
                if len(pending) >= self.batch_size:
                    embed_pending()
        except AudioError as problem:
            error = str(problem)
        pending += cutter.finish()
        embed_pending()
        if not embedded:
            return np.zeros((0, len(self.heads.classes)), dtype=np.float32), error
        rows = self.heads.row_probabilities(
            np.concatenate(embedded), params.window_s, cutter.n_rows
        )
        return rows, error


@dataclass
class Blend:
    """What predicts: the CNN alone (`head` None) or the CNN and the head with their weights."""

    cnn: Ensemble
    head: HeadMember | None = None
    weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"cnn": 1.0})
    space: str = "logit"

    @property
    def classes(self) -> list[str]:
        return self.cnn.classes

    @property
    def params(self) -> AudioParams:
        return self.cnn.params

    def model_files(self) -> list[Path]:
        """Every file the prediction depends on: the CNN's, and in a blend the heads', the
        weights' and BirdNET's."""
        if self.head is None:
            return list(self.cnn.files)
        return [*self.cnn.files, *self.head.files, self.head.embedder.path]

    def describe(self) -> str:
        if self.head is None:
            return f"the CNN's {self.cnn.engine} ensemble of {len(self.cnn.sources)} fold model(s)"
        weights = ", ".join(f"{name} {weight:g}" for name, weight in self.weights.items())
        return (
            f"a blend ({self.space}s, weights {weights}) of the CNN's {self.cnn.engine} "
            f"ensemble of {len(self.cnn.sources)} fold model(s) and {len(self.head.heads.heads)} "
            f"BirdNET head(s) ({self.head.embedder.path.name}, "
            f"{self.head.heads.row_windows(self.params.window_s).describe()})"
        )

    def combine(
        self, prediction: FilePrediction, head_rows: np.ndarray, head_error: str | None
    ) -> FilePrediction:
        """One recording's blended rows from the CNN's (raw) and the head's. Rows only one
        member has are that member's; a member's decoding problem becomes a note, and an error
        only when neither member could read the recording to its end."""
        n_rows = max(len(prediction.probabilities), len(head_rows))
        members = {
            "cnn": _padded(prediction.probabilities, n_rows),
            "head": _padded(head_rows, n_rows),
        }
        rows = blend_probabilities(members, self.weights, self.space)
        notes = list(prediction.notes)
        errors = {"cnn": prediction.error, "head": head_error}
        error = None
        if errors["cnn"] and errors["head"]:
            error = errors["cnn"]
        else:
            for failed, other in (("cnn", "head"), ("head", "cnn")):
                if errors[failed]:
                    notes.append(
                        f"the {failed} member could not read it to its end ({errors[failed]}); "
                        f"rows it lacks are the {other} member's alone"
                    )
        return FilePrediction(
            prediction.path,
            window_end_seconds(n_rows, self.params.window_s),
            rows,
            error,
            notes,
            # the CNN's decoded length, unless it read nothing (the head's rows then stand)
            prediction.duration_s if len(prediction.probabilities) else None,
        )


def _padded(rows: np.ndarray, n_rows: int) -> np.ndarray:
    padded = np.full((n_rows, rows.shape[1]), np.nan, dtype=np.float32)
    padded[: len(rows)] = rows
    return padded


def load_blend(
    cnn_models: Sequence[str | Path],
    heads: Sequence[str | Path] = (),
    embedding_model: str | Path | None = None,
    weights_json: str | Path | None = None,
    threads: int = 1,
) -> Blend:
    """The CNN's ensemble alone, or blended with the heads (all three of heads, embedding model
    and weights given). PredictionError when they do not fit together: the message names both."""
    cnn = load_ensemble(cnn_models, threads)
    given = {
        "heads": bool(heads),
        "embedding model": embedding_model is not None,
        "weights": weights_json is not None,
    }
    if not any(given.values()):
        return Blend(cnn)
    if not all(given.values()):
        missing = [name for name, present in given.items() if not present]
        raise PredictionError(
            f"a blend needs the heads, the BirdNET model and the weights; missing: {missing}"
        )
    weights_file = read_json(weights_json)
    heads_ = HeadEnsemble.load(heads)
    files = (*map(Path, heads), Path(weights_json))
    return _blend(cnn, heads_, weights_file, str(weights_json), embedding_model, threads, files)


def load_exported_blend(
    export: str | Path,
    embedding_model: str | Path,
    threads: int = 1,
    engine: str | None = None,
    precision: str | None = None,
) -> Blend:
    """The export's blend: its CNN (the export folder, model.json or an engine file, as
    `load_ensemble` reads it) and the heads and weights of blend.npz beside it, with the BirdNET
    model file it was made with (its checksum is checked)."""
    export = Path(export)
    cnn = load_ensemble([export], threads, engine, precision)
    bundle = exported_blend_bundle(export)
    heads, metadata = load_head_bundle(bundle)
    return _blend(cnn, heads, metadata, str(bundle), embedding_model, threads, (bundle,))


def exported_blend_bundle(export: str | Path) -> Path:
    """blend.npz of an export given as its folder or one of its files."""
    export = Path(export)
    return (export if export.is_dir() else export.parent) / BLEND_BUNDLE


# the export's heads, blend weights and BirdNET checksum, beside its model files
BLEND_BUNDLE = "blend.npz"


def _blend(
    cnn: Ensemble,
    heads: HeadEnsemble,
    weights_file: Mapping,
    weights_source: str,
    embedding_model: str | Path,
    threads: int,
    files: tuple[Path, ...],
) -> Blend:
    if weights_file.get("format_version") != BLEND_FORMAT:
        raise PredictionError(f"{weights_source}: not blend weights of format {BLEND_FORMAT}")
    if heads.classes != cnn.classes:
        heads_, cnn_ = set(heads.classes), set(cnn.classes)
        detail = (
            f"predict the same {len(cnn_)} classes in another order"
            if heads_ == cnn_
            else f"predict {len(heads_)} and {len(cnn_)} classes, {len(heads_ ^ cnn_)} not shared"
        )
        raise PredictionError(
            f"the heads ({heads.sources[0]}) and the CNN ({cnn.sources[0]}) {detail}: "
            "blend members trained on the same classes.txt"
        )
    if weights_file["classes"] != cnn.classes:
        raise PredictionError(
            f"{weights_source} was fitted for other classes than the CNN's ({cnn.sources[0]})"
        )
    if sorted(weights_file["members"]) != ["cnn", "head"]:
        raise PredictionError(
            f"{weights_source} blends {weights_file['members']}, not the cnn and the head given"
        )
    check_row_windows(heads.row_windows(cnn.params.window_s))
    embedder = EmbeddingModel(embedding_model, threads=threads)
    heads.check_embedding_model(embedder.sha256, embedder.path)
    return Blend(
        cnn,
        HeadMember(heads, embedder, files=files),
        dict(weights_file["weights"]),
        weights_file["space"],
    )


def predict_blended(
    paths: Sequence[str | Path],
    blend: Blend,
    batch_size: int,
    min_last_window_s: float,
    smoothing_kernel: Sequence[float] = NO_SMOOTHING,
    top_windows: int = 0,
    hops_per_window: int = 1,
) -> Iterator[FilePrediction]:
    """`recordings.predict_recordings` through the blend: each recording's members' raw rows
    blended, then post-processed."""
    predictions = predict_recordings(
        paths, blend.cnn, batch_size, min_last_window_s, hops_per_window=hops_per_window
    )
    for prediction in predictions:
        if blend.head is not None:
            rows, error = blend.head.rows(prediction.path, blend.params, min_last_window_s)
            prediction = blend.combine(prediction, rows, error)
        prediction.probabilities = postprocess(
            prediction.probabilities, smoothing_kernel, top_windows
        )
        yield prediction
