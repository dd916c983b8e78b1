"""The fold ensemble behind one call: (n, frames, n_mels) dB windows -> mean probabilities.

A model sees `input_s` seconds at once: that many consecutive windows joined along time. An SED
model gives one row per window from its own frames (`model.segment_probabilities`); a pooled
model sees one window at a time. The last chunk of a recording that holds fewer windows is filled
by repeating its own windows, and only its real windows' rows are kept.

The same ensemble (mean of the folds' probabilities) runs as
- keras:  the fold models as trained;
- an export: one file holding every fold (`export.export_stage`), run by a CPU engine
  (`runtimes`: TFLite, ONNX Runtime or OpenVINO, in fp32 or a reduced precision). TFLite has no
  antialiased resize, so the export writes the model's resize as the two matrix products it is
  (exactly the same linear map); everything after the resize is the trained graph.

The images come from `dataset.window_to_image`, the training code, so a model sees at prediction
what it saw in training.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dawnchorus.config import AudioParams
from dawnchorus.inference.runtimes import (
    REDUCED,
    engine_file,
    engine_name,
    engine_runner,
)
from dawnchorus.learning.modelcard import (
    ModelFileError,
    audio_params,
    check_metadata,
    read_metadata,
    segments,
)
from dawnchorus.runtime import configure_tensorflow

CARD = "model.json"  # an export's metadata, beside its engine files


class PredictionError(ValueError):
    """Prediction cannot start or its inputs disagree; the message names the file."""


@dataclass
class Ensemble:
    """Fold models behind one `predict(windows) -> probabilities` call."""

    metadata: dict
    sources: tuple[str, ...]
    engine: str
    # chunks (n, segments * frames, n_mels) -> (n, segments, classes)
    run_batch: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    files: tuple[Path, ...] = ()  # what it was loaded from (a prediction's run record)

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def params(self) -> AudioParams:
        return audio_params(self.metadata)

    @property
    def names(self) -> dict[str, dict[str, str]]:
        """{code: {"common", "scientific"}} when the export carries them (Keras fold models do
        not: their outputs show codes only)."""
        return dict(self.metadata.get("names", {}))

    @property
    def segments(self) -> int:
        return segments(self.metadata)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """(n, frames, n_mels) dB windows, consecutive windows of one recording -> (n, classes)
        mean probability of the folds. Windows are joined into chunks of `segments` from the
        first; a last partial chunk is filled by repeating its own windows."""
        if len(windows) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        chunks = join_windows(np.asarray(windows, dtype=np.float32), self.segments)
        rows = self.run_batch(chunks).reshape(-1, len(self.classes))
        return rows[: len(windows)]


def join_windows(windows: np.ndarray, segments: int) -> np.ndarray:
    """(n, frames, n_mels) -> (ceil(n / segments), segments * frames, n_mels): consecutive
    windows joined along time; the last chunk repeats its own windows when n does not divide."""
    n, frames, n_mels = windows.shape
    chunks = []
    for first in range(0, n, segments):
        own = windows[first : first + segments]
        chunks.append(own[np.arange(segments) % len(own)].reshape(segments * frames, n_mels))
    return np.stack(chunks)


def consistent_metadata(paths: Sequence[str | Path]) -> dict:
    """The metadata every model shares; PredictionError naming the first model that differs."""
    first = read_metadata(paths[0])
    for path in paths[1:]:
        other = read_metadata(path)
        for key in ("classes", "audio", "normalization", "input_s"):
            if other[key] != first[key]:
                raise PredictionError(
                    f"{path} and {paths[0]} differ in {key}: they cannot be averaged"
                )
    return first


def load_ensemble(
    paths: Sequence[str | Path],
    threads: int = 1,
    engine: str | None = None,
    precision: str | None = None,
) -> Ensemble:
    """Fold models (.keras files, run by Keras) or one export: its folder or model.json (run by
    the engine and precision the export chose, unless `engine`/`precision` say otherwise), or
    one of its engine files (`runtimes.engine_file`)."""
    paths = [Path(path) for path in paths]
    if not paths:
        raise PredictionError("no model given")
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise PredictionError(f"model file(s) not found: {', '.join(missing)}")
    suffixes = {path.suffix for path in paths}
    if suffixes == {".keras"}:
        return _load_keras(paths, threads)
    exported = len(paths) == 1 and (
        paths[0].is_dir() or paths[0].suffix in (*_ENGINE_OF_SUFFIX, ".json")
    )
    if not exported:
        raise PredictionError(
            "models must be .keras fold models or one export (its folder, model.json, or one "
            f"of its .tflite/.onnx files: it holds every fold), got {', '.join(map(str, paths))}"
        )
    return _load_export(paths[0], threads, engine, precision)


def load_fold_ensembles(paths: Sequence[str | Path], threads: int = 1) -> list[Ensemble]:
    """Each fold model (.keras) as an ensemble of its own, for labelling by one fold's model."""
    paths = [Path(path) for path in paths]
    if not paths:
        raise PredictionError("no model given")
    metadata, models = load_keras_models(paths, threads)
    return [
        keras_ensemble(metadata, [model], [path]) for model, path in zip(models, paths, strict=True)
    ]


def _load_keras(paths: list[Path], threads: int) -> Ensemble:
    metadata, models = load_keras_models(paths, threads)
    return keras_ensemble(metadata, models, paths)


def load_keras_models(paths: Sequence[Path], threads: int) -> tuple[dict, list]:
    """(the metadata they share, the Keras models) of fold model files, checked."""
    metadata = consistent_metadata(paths)
    configure_tensorflow(threads, mixed_precision=False, seed=0)
    import keras

    import dawnchorus.learning.model  # noqa: F401  (registers the custom layers the models use)

    models = []
    for path in paths:
        try:
            models.append(keras.models.load_model(path, compile=False))
        except Exception as error:
            raise ModelFileError(f"{path}: Keras cannot load it ({error})") from None
    _check_outputs(models, paths, metadata)
    return metadata, models


def keras_ensemble(metadata: dict, models: list, paths: Sequence[Path]) -> Ensemble:
    """Loaded Keras models behind one Ensemble (the mean of their probabilities)."""
    function = ensemble_function(models, metadata, tflite_compatible=False)
    return Ensemble(
        metadata,
        tuple(map(str, paths)),
        "keras",
        lambda chunks: function(chunks).numpy(),
        tuple(map(Path, paths)),
    )


def _check_outputs(models, paths, metadata) -> None:
    for model, path in zip(models, paths, strict=True):
        n_outputs = model.output_shape[-1]
        if n_outputs != len(metadata["classes"]):
            raise ModelFileError(
                f"{path}: the model has {n_outputs} outputs but its metadata lists "
                f"{len(metadata['classes'])} classes"
            )


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): the linear map tf.image.resize(bilinear, antialias) applies on one axis."""
    import tensorflow as tf

    basis = np.eye(n_in, dtype=np.float32)[:, :, None, None]  # n_in one-hot images, n_in x 1
    resized = tf.image.resize(basis, (n_out, 1), method="bilinear", antialias=True).numpy()
    return resized[:, :, 0, 0].T


def ensemble_function(models: Sequence, metadata: Mapping, tflite_compatible: bool):
    """A tf.function: (n, segments * frames, n_mels) dB chunks -> (n, segments, classes), the
    mean probability of `models` for each window of each chunk.

    `tflite_compatible` swaps the antialiased resize (an op TFLite lacks) for its matrices.
    """
    import keras
    import tensorflow as tf

    from dawnchorus.learning.dataset import window_to_image
    from dawnchorus.learning.model import frame_output, frames_to_segments

    n_segments = segments(metadata)
    _, n_mels, frames, _ = models[0].input_shape
    # everything from the resized image to the head's frames (pooled head: its logits)
    tails = [keras.Model(m.get_layer("resize").output, frame_output(m)) for m in models]
    if tflite_compatible:
        resize = models[0].get_layer("resize")
        rows = tf.constant(_resize_matrix(n_mels, resize.height))
        columns = tf.constant(_resize_matrix(frames, resize.width).T)

    @tf.function(input_signature=[tf.TensorSpec([None, frames, n_mels], tf.float32)])
    def ensemble(chunks):
        images = window_to_image(chunks, metadata["normalization"])
        if tflite_compatible:  # one resize for every fold (models[0]'s, as the matrices are)
            shared = tf.matmul(tf.matmul(rows, images[..., 0]), columns)[..., tf.newaxis]
        probabilities = []
        for model, tail in zip(models, tails, strict=True):
            resized = shared if tflite_compatible else model.get_layer("resize")(images)
            head = tail(resized, training=False)
            probabilities.append(tf.cast(frames_to_segments(head, n_segments), tf.float32))
        return tf.add_n(probabilities) / len(probabilities)

    ensemble.models = list(models)  # keeps the variables reachable for the TFLite converter
    return ensemble


def _load_export(path: Path, threads: int, engine: str | None, precision: str | None) -> Ensemble:
    """An export (folder, model.json, or one of its engine files) run by `engine`; by default
    the engine and precision the export was made for, or those of the file given."""
    given_file = not path.is_dir() and path.name != CARD
    folder = path.parent if given_file else path if path.is_dir() else path.parent
    card_path = folder / CARD
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelFileError(
            f"{path}: its metadata {card_path} is missing or unreadable ({error})"
        ) from None
    metadata = check_metadata(card, card_path)
    made_for = card.get("engine", {"engine": "tflite", "precision": "fp32"})  # older exports
    if given_file:
        model = path
        engine = engine or _ENGINE_OF_SUFFIX[path.suffix]
        precision = precision or _precision_of_name(path.name)
    else:
        engine = engine or made_for["engine"]
        precision = precision or (made_for["precision"] if engine == made_for["engine"] else "fp32")
        model = folder / engine_file(engine, precision)
    if not model.is_file():
        raise PredictionError(
            f"{model} not found: the export in {folder} was made for "
            f"{engine_name(made_for['engine'], made_for['precision'])} (and model.tflite, "
            "tflite fp32); set predict.engine and predict.precision and export again"
        )
    run = engine_runner(engine, precision, model, threads)
    return Ensemble(
        metadata,
        tuple(card.get("folds", [str(model)])),
        engine_name(engine, precision),
        run,
        (card_path, model),
    )


_ENGINE_OF_SUFFIX = {".tflite": "tflite", ".onnx": "onnxruntime"}


def _precision_of_name(name: str) -> str:
    """model.int8.onnx -> int8; model.tflite -> fp32."""
    parts = name.split(".")
    return parts[-2] if len(parts) > 2 and parts[-2] in REDUCED else "fp32"
