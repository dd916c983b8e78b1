"""The fold ensemble as one TFLite file, checked against the Keras models before it is written;
with a blend, the heads and weights beside it (blend.npz), the check covering the blend."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dawnchorus.artifacts import read_json, write_bytes, write_json
from dawnchorus.config import AudioParams
from dawnchorus.data.manifest import class_names, label_matrix, read_manifest
from dawnchorus.data.shards import ClipStore
from dawnchorus.inference.conversion import tflite_model, write_engine_file
from dawnchorus.inference.engines import (
    CARD,
    PredictionError,
    consistent_metadata,
    ensemble_function,
    keras_ensemble,
    load_keras_models,
)
from dawnchorus.inference.members import BLEND_BUNDLE
from dawnchorus.inference.runtimes import (
    ENGINE_FILES,
    REDUCED,
    engine_name,
    engine_runner,
    tflite_runner,
)
from dawnchorus.learning.blend import blend_probabilities
from dawnchorus.learning.modelcard import audio_params, segments
from dawnchorus.pretrained.embeddings import read_pooled_embeddings
from dawnchorus.pretrained.head import HeadEnsemble, save_head_bundle

log = logging.getLogger(__name__)


QUALITY_WINDOWS_PER_RECORDING = 4
# without soundscapes, int8 calibrates on up to this many training recordings (at most half
# of them: the others are left to its AUC check); on the demo's test soundscapes 32 lost 0.0020
# macro AUC against fp32, 64 0.0009, 128 none (docs/results.md, "Inference engines")
CALIBRATION_RECORDINGS = 128
# calibration windows are spread over this many windows from a recording's start (5 min)
CALIBRATION_SCAN_WINDOWS = 60


class ExportError(RuntimeError):
    """The exported model does not reproduce the Keras ensemble."""


@dataclass(frozen=True)
class EngineChoice:
    """The engine and precision the export is made for, and what checks a reduced precision:
    `calibration` windows (int8 ranges) and labelled `quality_windows` whose macro AUC may drop
    at most `auc_tolerance` from the fp32 export's."""

    engine: str = "tflite"
    precision: str = "fp32"
    calibration: np.ndarray | None = None
    quality_windows: np.ndarray | None = None
    quality_labels: np.ndarray | None = None  # (len(quality_windows), classes) 0/1
    # (without quality windows, as in benchmarks/inference.py, which scores soundscapes itself,
    # a reduced precision is not checked)
    auc_tolerance: float = 0.002

    @property
    def name(self) -> str:
        return engine_name(self.engine, self.precision)


def export_tflite(
    model_paths: Sequence[str | Path],
    out_path: str | Path,
    check_windows: np.ndarray,
    tolerance: float,
    threads: int = 1,
    blend_difference: Callable[[np.ndarray, np.ndarray], float] | None = None,
    choice: EngineChoice = EngineChoice(),
    names: Mapping[str, Mapping[str, str]] | None = None,
) -> dict:
    """Write the fold ensemble as one TFLite model (`out_path`), the file `choice`'s engine
    runs in its precision beside it, and their metadata (model.json).

    Both are checked on `check_windows` (real (n, segments * frames, n_mels) dB chunks) against
    the Keras ensemble before anything is written: an fp32 file may differ by at most
    `tolerance` (max abs difference of probabilities; with `blend_difference`, the Keras and
    the exported rows -> the largest difference of the blends they make, so is the blend); a
    reduced precision may lose at most `choice.auc_tolerance` macro AUC on
    `choice.quality_windows`, else the export runs tflite fp32 (model.json's engine says so,
    with the reason: `wanted`, `fallback`; the figures stay in its checks). A parity beyond
    `tolerance` is an ExportError, with the figures: nothing is written.
    """
    model_paths = [Path(path) for path in model_paths]
    out_path = Path(out_path)
    metadata, models = load_keras_models(model_paths, threads)
    function = ensemble_function(models, metadata, tflite_compatible=True)
    blob = tflite_model(function)

    windows = np.asarray(check_windows, dtype=np.float32)
    reference = keras_ensemble(metadata, models, model_paths).run_batch(windows)
    fp32 = tflite_runner(blob, threads)  # the reference of every engine's checks
    parity = _parity(reference, fp32(windows), blend_difference)
    _refuse_beyond(parity, tolerance, "TFLite export", len(windows))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".export-") as scratch:
        scratch = Path(scratch)
        engine_path = write_engine_file(
            choice.engine, choice.precision, function, blob, scratch, choice.calibration
        )
        if choice.name == engine_name("tflite", "fp32"):  # the export just checked
            run, checks = fp32, dict(parity)
        else:
            run = engine_runner(choice.engine, choice.precision, engine_path, threads)
            checks = _parity(reference, run(windows), blend_difference)
        fallback = None
        if choice.precision in REDUCED and choice.quality_windows is not None:
            checks.update(_quality(choice, fp32, run))
            if checks["macro_auc_change"] < -choice.auc_tolerance:
                # the fp32 export, checked above, is as good as the models: a run that trained
                # for hours ends with it rather than with nothing
                fallback = (
                    f"{choice.name} lost {-checks['macro_auc_change']:.4f} macro AUC against "
                    f"the fp32 export ({checks['macro_auc']:.4f} against "
                    f"{checks['fp32_macro_auc']:.4f} on {checks['quality_windows']} labelled "
                    f"windows; tolerance {choice.auc_tolerance}): the export runs tflite-fp32"
                )
                log.warning("%s", fallback)
        else:
            _refuse_beyond(checks, tolerance, choice.name, len(windows))
        # engine files of an earlier export would run other folds under this card
        for stale in set(ENGINE_FILES) - {engine_path.name}:
            out_path.with_name(stale).unlink(missing_ok=True)
        write_bytes(out_path, blob)
        if engine_path.name != out_path.name:  # not the TFLite export itself
            # kept after a fallback too: the workflow declared it, and the card says why the
            # export runs model.tflite instead
            os.replace(engine_path, out_path.with_name(engine_path.name))
        engine_path = out_path if fallback else out_path.with_name(engine_path.name)
    runs = ("tflite", "fp32") if fallback else (choice.engine, choice.precision)
    card = {
        **metadata,
        "folds": [str(path) for path in model_paths],
        "parity": parity,
        "engine": {"engine": runs[0], "precision": runs[1], "file": engine_path.name},
        "checks": {choice.name: checks},
    }
    if fallback:
        card["engine"].update(wanted=choice.name, fallback=fallback)
    if names:  # common and scientific names of the classes: the outputs' Common Name
        card["names"] = {code: dict(names[code]) for code in metadata["classes"] if code in names}
    write_json(out_path.with_name(CARD), card, sort_keys=False)
    log.info(
        "exported %d fold model(s) to %s (%.1f MB) for %s; max difference to Keras %.2e on %d "
        "windows; %s: %s",
        len(model_paths),
        out_path,
        len(blob) / 2**20,
        engine_name(*runs),
        parity["max_abs_difference"],
        len(windows),
        choice.name,
        checks,
    )
    return card


def _parity(reference, exported, blend_difference) -> dict:
    parity = {
        "max_abs_difference": float(np.max(np.abs(exported - reference))),
        "windows": len(reference),
    }
    if blend_difference is not None:
        parity["blend_max_abs_difference"] = blend_difference(reference, exported)
    return parity


def _refuse_beyond(parity: Mapping, tolerance: float, what: str, n_windows: int) -> None:
    for key, member in (("max_abs_difference", "ensemble"), ("blend_max_abs_difference", "blend")):
        if key in parity and not parity[key] <= tolerance:
            raise ExportError(
                f"the {what}'s {member} differs from the Keras {member} by {parity[key]:.2e} "
                f"on {n_windows} windows (tolerance {tolerance:.0e}): not written"
            )


def _quality(choice: EngineChoice, fp32: Callable, reduced: Callable) -> dict:
    """Macro AUC of the fp32 export and of the reduced precision on the labelled windows."""
    from dawnchorus.learning.metrics import birdclef_auc  # scikit-learn: only when exporting

    windows = np.asarray(choice.quality_windows, dtype=np.float32)
    aucs = []
    for run in (fp32, reduced):
        rows = run(windows)  # (n, segments, classes): every segment carries its chunk's labels
        labels = np.repeat(choice.quality_labels, rows.shape[1], axis=0)
        aucs.append(birdclef_auc(labels, rows.reshape(-1, rows.shape[-1])).macro)
    return {
        "fp32_macro_auc": aucs[0],
        "macro_auc": aucs[1],
        "macro_auc_change": aucs[1] - aucs[0],
        "quality_windows": len(windows),
        "calibration_windows": 0 if choice.calibration is None else len(choice.calibration),
    }


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
    calibration_audio: Sequence[str | Path] = (),
    taxonomy_csv: str | Path | None = None,
    clip_audio_dir: str | Path | None = None,
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
    manifest = read_manifest(manifest_csv)
    filenames = list(manifest["filename"])
    predict = config["predict"]
    store = ClipStore(shard_paths, params, filenames, ram_budget_mb=0)  # a few windows: stream
    try:
        available = np.flatnonzero(store.available)
        rows = available[: predict["export_check_windows"]]
        crop_frames = params.crop_frames(segments(metadata))
        evaluation = evaluation_windows(store, rows, max_windows=1, crop_frames=crop_frames)
        windows, owner = evaluation.windows, evaluation.clip_of_window  # owner: index into rows
        choice = _engine_choice(
            predict,
            store,
            available,
            crop_frames,
            manifest,
            metadata,
            calibration_audio,
            clip_audio_dir,
        )
    finally:
        store.close()
    if len(windows) == 0:
        raise PredictionError("the shards hold no recording to check the export on")
    names = class_names(taxonomy_csv, metadata["classes"]) if taxonomy_csv else None
    if not heads:
        # an earlier blend's bundle would be read beside this model by `dawnchorus predict`
        Path(out_path).with_name(BLEND_BUNDLE).unlink(missing_ok=True)
        return export_tflite(
            model_paths,
            out_path,
            windows,
            predict["export_tolerance"],
            threads,
            choice=choice,
            names=names,
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
        predict["export_tolerance"],
        threads,
        blend_difference,
        choice,
        names,
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


def _engine_choice(
    predict: Mapping,
    store: ClipStore,
    available: np.ndarray,
    crop_frames: int,
    manifest,
    metadata: Mapping,
    calibration_audio: Sequence[str | Path] = (),
    clip_audio_dir: str | Path | None = None,
) -> EngineChoice:
    """The configured engine and precision; a reduced precision with its calibration windows
    and, apart from them, the labelled windows its AUC is checked on (the other recordings in a
    seeded random order, so every class can be among them)."""
    from dawnchorus.learning.dataset import evaluation_windows  # imports TensorFlow

    engine, precision = predict["engine"], predict["precision"]
    if engine == "keras":  # predict runs the fold models; the export is still made for users
        return EngineChoice()
    if precision not in REDUCED:
        return EngineChoice(engine, precision)
    shuffled = np.random.default_rng(0).permutation(available)
    if calibration_audio:
        # the audio it will predict
        calibration = audio_calibration(calibration_audio, predict["calibration_windows"], metadata)
        n_calibration = 0
    elif clip_audio_dir is not None:
        # no soundscapes: training recordings, decoded and cut as prediction cuts them (on the
        # demo as good as soundscapes; one stored window of each lost 0.002-0.003 soundscape AUC)
        n_calibration = min(CALIBRATION_RECORDINGS, len(available) // 2)
        filenames = manifest["filename"].to_numpy()
        calibration = audio_calibration(
            [Path(clip_audio_dir) / filenames[row] for row in shuffled[:n_calibration]],
            predict["calibration_windows"],
            metadata,
        )
    else:
        # no audio given (a caller outside the workflow): stored windows from the shards; a
        # small data set gives half its recordings to each, rather than none to the check
        n_calibration = min(predict["calibration_windows"], len(available) // 2)
        calibration = evaluation_windows(
            store, shuffled[:n_calibration], max_windows=1, crop_frames=crop_frames
        ).windows
    # up to QUALITY_WINDOWS_PER_RECORDING windows of each other recording: an AUC on a few
    # hundred windows moves by more than the tolerance by chance
    checked = shuffled[n_calibration:]
    quality = evaluation_windows(
        store, checked, max_windows=QUALITY_WINDOWS_PER_RECORDING, crop_frames=crop_frames
    )
    keep = np.arange(min(len(quality.windows), predict["quality_check_windows"]))
    labels = label_matrix(manifest.iloc[checked], metadata["classes"])
    if len(quality.windows) == 0:
        raise PredictionError(
            f"{engine_name(engine, precision)} needs labelled windows apart from its "
            f"{n_calibration} calibration windows to check its AUC; the shards hold "
            f"{len(available)} recording(s) (use predict.precision fp32)"
        )
    return EngineChoice(
        engine,
        precision,
        calibration=calibration,
        quality_windows=quality.windows[keep],
        quality_labels=labels[quality.clip_of_window[keep]],
        auc_tolerance=predict["quantized_auc_tolerance"],
    )


def audio_calibration(paths: Sequence[str | Path], n_windows: int, metadata: Mapping) -> np.ndarray:
    """About `n_windows` model inputs from the recordings `paths`, as many from each, cut and
    featurised as prediction does and spread evenly over each recording's first
    CALIBRATION_SCAN_WINDOWS windows; files that cannot be decoded are passed."""
    from dawnchorus.inference.engines import join_windows
    from dawnchorus.inference.recordings import recording_windows, window_features
    from dawnchorus.signal.audio import AudioError

    params, n_segments = audio_params(metadata), segments(metadata)
    per_file = max(1, -(-n_windows // len(paths)))
    # one input from each file is its first: decoding further would be thrown away
    scan = (1 if per_file == 1 else CALIBRATION_SCAN_WINDOWS) * n_segments
    chunks = []
    for path in paths:
        windows = []
        try:
            for samples in recording_windows(path, params, params.window_s):
                windows.append(samples)
                if len(windows) == scan:
                    break
        except AudioError as error:
            log.warning("calibration skips %s: %s", path, error)
        inputs = len(windows) // n_segments
        if inputs:
            chosen = np.unique(np.linspace(0, inputs - 1, min(per_file, inputs)).round())
            features = [
                window_features(windows[int(start) * n_segments + segment], params)
                for start in chosen
                for segment in range(n_segments)
            ]
            chunks.append(join_windows(np.stack(features).astype(np.float32), n_segments))
        if sum(map(len, chunks)) >= n_windows:
            break
    if not chunks:
        raise PredictionError("no calibration window could be read from the soundscapes given")
    return np.concatenate(chunks)[:n_windows]
