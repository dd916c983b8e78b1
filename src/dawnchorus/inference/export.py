"""The fold ensemble as one TFLite file, checked against the Keras models before it is written."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dawnchorus.artifacts import write_bytes, write_json
from dawnchorus.config import AudioParams
from dawnchorus.data.manifest import read_manifest
from dawnchorus.data.shards import ClipStore
from dawnchorus.inference.engines import (
    PredictionError,
    consistent_metadata,
    ensemble_function,
    keras_ensemble,
    load_keras_models,
    tflite_runner,
)
from dawnchorus.learning.modelcard import audio_params, segments

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The exported model does not reproduce the Keras ensemble."""


def export_tflite(
    model_paths: Sequence[str | Path],
    out_path: str | Path,
    check_windows: np.ndarray,
    tolerance: float,
    threads: int = 1,
) -> dict:
    """Write the fold ensemble as one TFLite model, with its metadata in `out_path`.json.

    The export is checked on `check_windows` (real (n, segments * frames, n_mels) dB chunks)
    against the Keras ensemble; above `tolerance` (max abs difference of probabilities)
    ExportError is raised and nothing is written.
    """
    import tensorflow as tf

    model_paths = [Path(path) for path in model_paths]
    metadata, models = load_keras_models(model_paths, threads)
    function = ensemble_function(models, metadata, tflite_compatible=True)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    blob = converter.convert()

    windows = np.asarray(check_windows, dtype=np.float32)
    reference = keras_ensemble(metadata, models, model_paths).run_batch(windows)
    difference = float(np.max(np.abs(tflite_runner(blob, threads)(windows) - reference)))
    if not difference <= tolerance:
        raise ExportError(
            f"the TFLite export differs from the Keras ensemble by {difference:.2e} on "
            f"{len(windows)} windows (tolerance {tolerance:.0e}): not written"
        )
    out_path = Path(out_path)
    card = {
        **metadata,
        "folds": [str(path) for path in model_paths],
        "parity": {"max_abs_difference": difference, "windows": len(windows)},
    }
    write_bytes(out_path, blob)
    write_json(out_path.with_suffix(".json"), card, sort_keys=False)
    log.info(
        "exported %d fold model(s) to %s (%.1f MB); max difference to Keras %.2e on %d windows",
        len(model_paths),
        out_path,
        len(blob) / 2**20,
        difference,
        len(windows),
    )
    return card


def export_stage(
    model_paths: Sequence[str | Path],
    manifest_csv: str | Path,
    shard_paths: Sequence[str | Path],
    config: Mapping,
    out_path: str | Path,
    threads: int = 1,
) -> dict:
    """Rule export: the fold ensemble as TFLite, checked on real windows from the shards."""
    from dawnchorus.learning.dataset import evaluation_windows  # imports TensorFlow

    params = AudioParams.from_config(config)
    metadata = consistent_metadata(model_paths)
    model_params = audio_params(metadata)
    if model_params.feature_attrs() != params.feature_attrs():
        raise PredictionError(
            f"the models were trained on other features ({model_params.feature_attrs()}) than "
            f"the shards hold ({params.feature_attrs()})"
        )
    filenames = list(read_manifest(manifest_csv)["filename"])
    store = ClipStore(shard_paths, params, filenames, ram_budget_mb=0)  # a few windows: stream
    try:
        rows = np.flatnonzero(store.available)[: config["predict"]["export_check_windows"]]
        crop_frames = params.crop_frames(segments(metadata))
        windows = evaluation_windows(store, rows, max_windows=1, crop_frames=crop_frames).windows
    finally:
        store.close()
    if len(windows) == 0:
        raise PredictionError("the shards hold no recording to check the export on")
    return export_tflite(
        model_paths, out_path, windows, config["predict"]["export_tolerance"], threads
    )
