"""The fold ensemble as one TFLite file, checked against the Keras models before it is written;
with a blend, the heads and weights beside it (blend.npz), the check covering the blend."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from dawnchorus.artifacts import read_json, write_bytes, write_json
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
from dawnchorus.inference.members import BLEND_BUNDLE
from dawnchorus.learning.blend import blend_probabilities
from dawnchorus.learning.modelcard import audio_params, segments
from dawnchorus.pretrained.embeddings import read_pooled_embeddings
from dawnchorus.pretrained.head import HeadEnsemble, save_head_bundle

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The exported model does not reproduce the Keras ensemble."""


def export_tflite(
    model_paths: Sequence[str | Path],
    out_path: str | Path,
    check_windows: np.ndarray,
    tolerance: float,
    threads: int = 1,
    blend_difference: Callable[[np.ndarray, np.ndarray], float] | None = None,
) -> dict:
    """Write the fold ensemble as one TFLite model, with its metadata in `out_path`.json.

    The export is checked on `check_windows` (real (n, segments * frames, n_mels) dB chunks)
    against the Keras ensemble; above `tolerance` (max abs difference of probabilities)
    ExportError is raised and nothing is written. With `blend_difference` (the Keras and the
    TFLite rows -> the largest difference of the blends they make) the blend is held to the
    same tolerance.
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
    exported = tflite_runner(blob, threads)(windows)
    difference = float(np.max(np.abs(exported - reference)))
    parity = {"max_abs_difference": difference, "windows": len(windows)}
    if blend_difference is not None:
        parity["blend_max_abs_difference"] = blend_difference(reference, exported)
    for key, what in (("max_abs_difference", "ensemble"), ("blend_max_abs_difference", "blend")):
        if key in parity and not parity[key] <= tolerance:
            raise ExportError(
                f"the TFLite export's {what} differs from the Keras {what} by {parity[key]:.2e} "
                f"on {len(windows)} windows (tolerance {tolerance:.0e}): not written"
            )
    out_path = Path(out_path)
    card = {
        **metadata,
        "folds": [str(path) for path in model_paths],
        "parity": parity,
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
    heads: Sequence[str | Path] = (),
    weights_json: str | Path | None = None,
    embedding_shards: Sequence[str | Path] = (),
) -> dict:
    """Rule export: the fold ensemble as TFLite, checked on real windows from the shards.

    With a blend (`heads`, `weights_json`), the heads, the weights and the BirdNET model's
    checksum go into blend.npz beside the model, and the check covers the blend: the Keras and
    the TFLite rows of the check windows, each blended with the heads' probabilities of the same
    recordings (from their pooled embeddings)."""
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
        evaluation = evaluation_windows(store, rows, max_windows=1, crop_frames=crop_frames)
        windows, owner = evaluation.windows, evaluation.clip_of_window  # owner: index into rows
    finally:
        store.close()
    if len(windows) == 0:
        raise PredictionError("the shards hold no recording to check the export on")
    if not heads:
        # an earlier blend's bundle would be read beside this model by `dawnchorus predict`
        Path(out_path).with_name(BLEND_BUNDLE).unlink(missing_ok=True)
        return export_tflite(
            model_paths, out_path, windows, config["predict"]["export_tolerance"], threads
        )
    head_ensemble = HeadEnsemble.load(heads)
    weights_file = read_json(weights_json)
    checked = [filenames[row] for row in rows]
    pooled = read_pooled_embeddings(embedding_shards, checked, head_ensemble.metadata["pooling"])
    head_rows = np.full((len(checked), len(head_ensemble.classes)), np.nan, np.float32)
    if pooled.available.any():
        head_rows[pooled.available] = np.mean(
            [head.probabilities(pooled.features[pooled.available]) for head in head_ensemble.heads],
            axis=0,
        )

    def blend_difference(keras_rows: np.ndarray, tflite_rows: np.ndarray) -> float:
        """Each recording's window rows (n, segments, classes) blended with its head row."""
        per_window = np.repeat(head_rows[owner], keras_rows.shape[1], axis=0)
        blended = [
            blend_probabilities(
                {"cnn": rows.reshape(-1, rows.shape[-1]), "head": per_window},
                weights_file["weights"],
                weights_file["space"],
            )
            for rows in (keras_rows, tflite_rows)
        ]
        return float(np.max(np.abs(blended[0] - blended[1])))

    card = export_tflite(
        model_paths,
        out_path,
        windows,
        config["predict"]["export_tolerance"],
        threads,
        blend_difference,
    )
    embedding = {
        "embedding_file": head_ensemble.metadata["embedding_file"],
        "embedding_sha256": head_ensemble.metadata["embedding_sha256"],
    }
    save_head_bundle(
        Path(out_path).with_name(BLEND_BUNDLE), head_ensemble, {**weights_file, **embedding}
    )
    log.info(
        "blend of the export and %d head(s) (weights %s, BirdNET %s sha256 %s): max difference "
        "to the Keras blend %.2e",
        len(head_ensemble.heads),
        weights_file["weights"],
        embedding["embedding_file"],
        embedding["embedding_sha256"][:12],
        card["parity"]["blend_max_abs_difference"],
    )
    return card
