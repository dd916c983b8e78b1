"""Prediction: recordings -> consecutive windows -> log-mel -> the fold ensemble's probabilities.

Features come from `features.log_mel` and `dataset.window_to_image`, the training code, and are
rounded to float16 as the shards store them, so a model sees at prediction what it saw in training.

A model sees `input_s` seconds at once: that many consecutive windows joined along time. An SED
model gives one row per window from its own frames (`model.segment_probabilities`); a pooled
model sees one window at a time. The last chunk of a recording that holds fewer windows is filled
by repeating its own windows, and only its real windows' rows are kept.

Two engines run the same ensemble (mean of the folds' probabilities):
- keras:  the fold models as trained;
- tflite: one exported file holding every fold (`export_tflite`). TFLite has no antialiased
  resize, so the export writes the model's resize as the two matrix products it is (exactly the
  same linear map); everything after the resize is the trained graph.

Recordings are streamed (decoded block by block, cut into windows as they come), so a two-hour
file costs no more memory than a minute of it. Decoding and features of the next windows run in
a background thread while the model works on the current batch.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from dawnchorus.artifacts import write_bytes, write_json, write_table
from dawnchorus.audio import AudioError, last_partial_window, stream_audio
from dawnchorus.config import AudioParams
from dawnchorus.features import log_mel
from dawnchorus.modelcard import (
    ModelFileError,
    audio_params,
    check_metadata,
    read_metadata,
    segments,
)
from dawnchorus.postprocess import NO_SMOOTHING, merge_overlapping_windows, postprocess

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = frozenset({".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3", ".aif", ".aiff"})
# the `predict` config keys soundscape_submission reads: the predict rule passes exactly these
# (changing another key, e.g. the export's tolerance, does not rerun the predictions)
SUBMISSION_SETTINGS = (
    "batch_size",
    "min_last_window_s",
    "fallback_probability",
    "fallback_duration_s",
    "smoothing_kernel",
    "scale_by_top_windows",
    "hops_per_window",
)
_QUEUED_BATCHES = 4  # decoded batches waiting for the model: bounds memory, keeps it busy
_TFLITE_CALL_WINDOWS = 4


class PredictionError(ValueError):
    """Prediction cannot start or its inputs disagree; the message names the file."""


class ExportError(RuntimeError):
    """The exported model does not reproduce the Keras ensemble."""


# --------------------------------------------------------------------------------------------
# windows and features


def recording_windows(
    path: str | Path, params: AudioParams, min_last_window_s: float
) -> Iterator[np.ndarray]:
    """Consecutive windows of `params.window_s` seconds (mono samples at the model's rate).

    A last partial window of at least `min_last_window_s` (or a recording shorter than one
    window) is filled by repeating its own audio, as training fills short recordings, so it never
    holds artificial silence. Raises AudioError when decoding fails (after the windows it could
    cut).
    """
    for samples, _ in _windows_and_wholeness(path, params, min_last_window_s):
        yield samples


def _windows_and_wholeness(
    path: str | Path, params: AudioParams, min_last_window_s: float
) -> Iterator[tuple[np.ndarray, bool]]:
    """`recording_windows`, each with whether it is whole audio (False: a filled last one)."""
    size = params.window_samples
    pending = np.zeros(0, dtype=np.float32)
    yielded = 0
    for block in stream_audio(path, params.sample_rate):
        pending = np.concatenate([pending, block]) if pending.size else block
        n_full = len(pending) // size
        for i in range(n_full):
            yield pending[i * size : (i + 1) * size], True
        yielded += n_full
        pending = pending[n_full * size :]
    last = last_partial_window(pending, size, yielded == 0, min_last_window_s * params.sample_rate)
    if last is not None:
        yield last, False


def windows_between(previous: np.ndarray, current: np.ndarray, hops_per_window: int):
    """The windows starting j / hops_per_window of a window into `previous` (j = 1, 2, …),
    made of its end and the start of the whole window `current` that follows it."""
    size = len(previous)
    for j in range(1, hops_per_window):
        shift = round(j * size / hops_per_window)
        yield np.concatenate([previous[shift:], current[:shift]])


def window_features(samples: np.ndarray, params: AudioParams) -> np.ndarray:
    """(frames, n_mels) log-mel dB of one window, float16 like the stored training windows."""
    return log_mel(samples, params).astype(np.float16)


def window_end_seconds(n_windows: int, window_s: float) -> list[int | float]:
    ends = [(i + 1) * window_s for i in range(n_windows)]
    return [int(end) if float(end).is_integer() else round(end, 3) for end in ends]


def find_recordings(paths: Iterable[str | Path]) -> list[Path]:
    """Files given, and audio files found under folders given (recursively, sorted)."""
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found += sorted(
                p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
            )
        elif item.exists():
            found.append(item)
        else:
            raise PredictionError(f"'{item}' does not exist")
    return found


# --------------------------------------------------------------------------------------------
# the ensemble


@dataclass
class Ensemble:
    """Fold models behind one `predict(windows) -> probabilities` call."""

    metadata: dict
    sources: tuple[str, ...]
    engine: str
    # chunks (n, segments * frames, n_mels) -> (n, segments, classes)
    run_batch: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def params(self) -> AudioParams:
        return audio_params(self.metadata)

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


def load_ensemble(paths: Sequence[str | Path], threads: int = 1) -> Ensemble:
    """Fold models (.keras files) or one exported model (.tflite with its .json beside it)."""
    paths = [Path(path) for path in paths]
    if not paths:
        raise PredictionError("no model given")
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise PredictionError(f"model file(s) not found: {', '.join(missing)}")
    suffixes = {path.suffix for path in paths}
    if suffixes == {".tflite"}:
        if len(paths) > 1:
            raise PredictionError("give one exported .tflite model (it holds every fold)")
        return _load_tflite(paths[0], threads)
    if suffixes == {".keras"}:
        return _load_keras(paths, threads)
    raise PredictionError(
        f"models must be .keras fold models or one .tflite export, got {sorted(suffixes)}"
    )


def load_fold_ensembles(paths: Sequence[str | Path], threads: int = 1) -> list[Ensemble]:
    """Each fold model (.keras) as an ensemble of its own, for labelling by one fold's model."""
    paths = [Path(path) for path in paths]
    if not paths:
        raise PredictionError("no model given")
    metadata, models = _keras_models(paths, threads)
    return [
        _keras_ensemble(metadata, [model], [path])
        for model, path in zip(models, paths, strict=True)
    ]


def _load_keras(paths: list[Path], threads: int) -> Ensemble:
    metadata, models = _keras_models(paths, threads)
    return _keras_ensemble(metadata, models, paths)


def _keras_models(paths: Sequence[Path], threads: int) -> tuple[dict, list]:
    metadata = consistent_metadata(paths)
    from dawnchorus.train import configure_tensorflow

    configure_tensorflow(threads, mixed_precision=False, seed=0)
    import keras

    import dawnchorus.model  # noqa: F401  (registers the custom layers the models use)

    models = []
    for path in paths:
        try:
            models.append(keras.models.load_model(path, compile=False))
        except Exception as error:
            raise ModelFileError(f"{path}: Keras cannot load it ({error})") from None
    _check_outputs(models, paths, metadata)
    return metadata, models


def _keras_ensemble(metadata: dict, models: list, paths: Sequence[Path]) -> Ensemble:
    function = ensemble_function(models, metadata, tflite_compatible=False)
    return Ensemble(
        metadata, tuple(map(str, paths)), "keras", lambda chunks: function(chunks).numpy()
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

    from dawnchorus.dataset import window_to_image
    from dawnchorus.model import frame_output, frames_to_segments

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


def _load_tflite(path: Path, threads: int) -> Ensemble:
    card_path = path.with_suffix(".json")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelFileError(
            f"{path}: its metadata {card_path.name} is missing or unreadable ({error})"
        ) from None
    metadata = check_metadata(card, card_path)
    run = tflite_runner(path.read_bytes(), threads)
    return Ensemble(metadata, tuple(card.get("folds", [str(path)])), "tflite", run)


def tflite_runner(model: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=max(1, threads))
    (given,) = interpreter.get_input_details()
    (output,) = interpreter.get_output_details()
    allocated = [0]

    def invoke(windows: np.ndarray) -> np.ndarray:
        if allocated[0] != len(windows):  # reallocating costs: only when the size changes
            interpreter.resize_tensor_input(given["index"], list(windows.shape))
            interpreter.allocate_tensors()
            allocated[0] = len(windows)
        interpreter.set_tensor(given["index"], np.ascontiguousarray(windows))
        interpreter.invoke()
        return interpreter.get_tensor(output["index"]).copy()

    def run(windows: np.ndarray) -> np.ndarray:
        # XNNPACK is fastest on a few windows at a time (their activations stay in cache): at
        # 256x256 on 2 threads, 97 windows/s in calls of 4 against 66 in calls of 64. Every
        # call has that size: a short last one is padded with its own windows, since resizing
        # the interpreter costs more than predicting the padding
        outputs = []
        for first in range(0, len(windows), _TFLITE_CALL_WINDOWS):
            call = windows[first : first + _TFLITE_CALL_WINDOWS]
            padded = call[np.arange(_TFLITE_CALL_WINDOWS) % len(call)]
            outputs.append(invoke(padded)[: len(call)])
        return np.concatenate(outputs)

    return run


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
    metadata, models = _keras_models(model_paths, threads)
    function = ensemble_function(models, metadata, tflite_compatible=True)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    blob = converter.convert()

    windows = np.asarray(check_windows, dtype=np.float32)
    reference = _keras_ensemble(metadata, models, model_paths).run_batch(windows)
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


# --------------------------------------------------------------------------------------------
# recordings -> probabilities


@dataclass
class FilePrediction:
    """The windows of one recording: where each ends, their probabilities, and a decoding
    problem if there was one (then `probabilities` holds the windows before it)."""

    path: Path
    end_s: list[int | float]
    probabilities: np.ndarray
    error: str | None = None


_END = object()


def predict_recordings(
    paths: Sequence[str | Path],
    ensemble: Ensemble,
    batch_size: int,
    min_last_window_s: float,
    smoothing_kernel: Sequence[float] = NO_SMOOTHING,
    top_windows: int = 0,
    hops_per_window: int = 1,
) -> Iterator[FilePrediction]:
    """Predict each recording in turn; a recording that cannot be decoded is reported in its
    FilePrediction.error, never raised, so one bad file does not stop the others.

    With `hops_per_window` > 1 the windows starting between two rows (every window_s /
    hops_per_window seconds) are predicted too and merged into the rows they overlap
    (`postprocess.merge_overlapping_windows`). Each recording's rows are then post-processed
    (`postprocess.postprocess`: the smoothing kernel, then the top-window scaling)."""
    params = ensemble.params
    if hops_per_window > 1 and ensemble.segments > 1:
        raise PredictionError(
            "overlapping windows need a model of one window per input (model.input_s = "
            f"audio.window_s); this one takes {ensemble.segments}"
        )
    # a batch holds whole chunks: a chunk split across two batches would be predicted as two
    batch_size = max(1, batch_size // ensemble.segments) * ensemble.segments
    batches: queue.Queue = queue.Queue(maxsize=_QUEUED_BATCHES)
    stop = threading.Event()

    def put(item) -> None:
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def decode_all() -> None:
        try:
            # one BLAS thread for the mel filterbank products: more would take the model's cores
            # (70 instead of 55 windows/s end to end at 256x256 on 2 cores)
            with threadpool_limits(limits=1, user_api="blas"):
                decode_files()
        except BaseException as unexpected:  # a bug, not a bad file: re-raised by the consumer
            put((None, None, None, unexpected))
        put(_END)

    def decode_files() -> None:
        for index, path in enumerate(paths):
            error = decode_file(index, path)
            put((index, None, None, error))  # the recording is complete
            if stop.is_set():
                return

    def decode_file(index: int, path) -> str | None:
        """Queue the recording's windows in batches; its decoding problem, if any."""
        # a row's own windows, and those between two rows, go to the model in batches apart
        pending: dict[str, list[np.ndarray]] = {"rows": [], "between": []}

        def add(kind: str, samples: np.ndarray) -> None:
            pending[kind].append(window_features(samples, params))
            if len(pending[kind]) == batch_size:
                put((index, kind, np.stack(pending[kind]), None))
                pending[kind] = []

        previous = None  # the last whole window, for the windows between it and the next
        error = None
        try:
            for samples, whole in _windows_and_wholeness(path, params, min_last_window_s):
                add("rows", samples)
                if hops_per_window > 1 and whole:
                    if previous is not None:
                        for between in windows_between(previous, samples, hops_per_window):
                            add("between", between)
                    previous = samples
        except AudioError as problem:
            error = str(problem)
        for kind, batch in pending.items():
            if batch:
                put((index, kind, np.stack(batch), None))
        return error

    producer = threading.Thread(target=decode_all, name="decode", daemon=True)
    producer.start()
    outputs: dict[str, list[np.ndarray]] = {"rows": [], "between": []}
    n_classes = len(ensemble.classes)

    def collected(kind: str) -> np.ndarray:
        found = outputs[kind]
        return np.concatenate(found) if found else np.zeros((0, n_classes), dtype=np.float32)

    try:
        while (item := batches.get()) is not _END:
            index, kind, windows, error = item
            if index is None:
                raise error
            if windows is not None:
                outputs[kind].append(ensemble.predict(windows))
                continue
            rows = collected("rows")
            between = collected("between").reshape(-1, max(1, hops_per_window - 1), n_classes)
            outputs = {"rows": [], "between": []}
            yield FilePrediction(
                Path(paths[index]),
                window_end_seconds(len(rows), params.window_s),
                postprocess(
                    merge_overlapping_windows(rows, between, hops_per_window),
                    smoothing_kernel,
                    top_windows,
                ),
                error,
            )
    finally:
        stop.set()
        producer.join()


# --------------------------------------------------------------------------------------------
# Kaggle submission


def row_ids(stem: str, end_s: Iterable[int | float]) -> list[str]:
    return [f"{stem}_{end}" for end in end_s]


def check_classes(model_classes: Sequence[str], expected: Sequence[str], source: str) -> None:
    """PredictionError unless the model predicts exactly `expected`, in that order."""
    if list(model_classes) == list(expected):
        return
    missing = [label for label in expected if label not in model_classes]
    extra = [label for label in model_classes if label not in expected]
    detail = (
        f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
        f"extra {extra[:5]}{'...' if len(extra) > 5 else ''}"
        if missing or extra
        else "same classes in another order"
    )
    raise PredictionError(
        f"the model's {len(model_classes)} classes differ from the {len(expected)} of "
        f"{source} ({detail}): predict with models trained on this taxonomy"
    )


def expected_submission_rows(
    sample_submission: str | Path | None, classes: Sequence[str]
) -> dict[str, list[str]]:
    """The row ids sample_submission.csv lists, by soundscape stem (none without the file)."""
    expected_rows: dict[str, list[str]] = {}
    if sample_submission is not None:
        sample = pd.read_csv(sample_submission)
        check_classes(list(sample.columns[1:]), classes, "the taxonomy (sample_submission.csv)")
        for row_id in sample["row_id"].astype(str):
            expected_rows.setdefault(row_id.rsplit("_", 1)[0], []).append(row_id)
    return expected_rows


def soundscape_submission(
    soundscapes: Sequence[str | Path],
    ensemble: Ensemble,
    classes: Sequence[str],
    settings: Mapping,
    sample_submission: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(submission, problems): one row per window of every soundscape, `classes` columns.
    `settings`: the predict config's SUBMISSION_SETTINGS. See `assemble_submission`."""
    check_classes(ensemble.classes, classes, "the taxonomy")
    expected_rows = expected_submission_rows(sample_submission, classes)
    ordered = sorted(map(Path, soundscapes), key=lambda path: path.stem)
    predictions = predict_recordings(
        ordered,
        ensemble,
        settings["batch_size"],
        settings["min_last_window_s"],
        hops_per_window=settings["hops_per_window"],
    )
    # in a job's log (not a terminal) a progress line every 10 s, not one per file
    progress = tqdm(predictions, total=len(ordered), unit="file", mininterval=10)
    return assemble_submission(progress, classes, settings, expected_rows, ensemble.params.window_s)


def assemble_submission(
    predictions: Iterable[FilePrediction],
    classes: Sequence[str],
    settings: Mapping,
    expected_rows: Mapping[str, list[str]],
    window_s: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(submission, problems) from the soundscapes' window rows (`predict_recordings` without
    post-processing): each soundscape's rows post-processed (`settings`' smoothing kernel and
    top-window scaling), then completed.

    A soundscape that cannot be (fully) decoded, or is shorter than the sample submission expects,
    keeps the rows it has; its missing rows (those of the sample submission for it, else
    `fallback_duration_s` worth for an undecodable one) get `fallback_probability`, and `problems`
    says which file, why, and how many rows were filled. A soundscape of the sample submission
    without an audio file keeps its rows too (all filled) and gets a `problems` row.
    """
    fallback_windows = max(1, math.ceil(settings["fallback_duration_s"] / window_s))
    blocks: list[tuple[str, pd.DataFrame]] = []  # (soundscape stem, its rows)
    problems = []

    def fallback_rows(source: Path, reason: str, predicted: int, filled: int) -> pd.DataFrame:
        """Record a soundscape's problem (the log names its path, problems.csv its file name);
        the `filled` rows of fallback probabilities it needs."""
        fallback = settings["fallback_probability"]
        log.warning(
            "%s: %s; %d window(s) predicted, %d row(s) filled with %g",
            source,
            reason,
            predicted,
            filled,
            fallback,
        )
        problems.append(
            {
                "filename": source.name,
                "reason": reason,
                "predicted_rows": predicted,
                "filled_rows": filled,
            }
        )
        return pd.DataFrame(fallback, index=range(filled), columns=list(classes))

    predicted_stems = set()
    for prediction in predictions:
        stem = prediction.path.stem
        predicted_stems.add(stem)
        ids = row_ids(stem, prediction.end_s)
        rows = postprocess(
            prediction.probabilities, settings["smoothing_kernel"], settings["scale_by_top_windows"]
        )
        block = pd.DataFrame(rows, columns=list(classes))
        wanted = expected_rows.get(stem, [])
        if prediction.error is not None and not wanted:
            wanted = row_ids(stem, window_end_seconds(fallback_windows, window_s))
        predicted = set(ids)
        filled = [row_id for row_id in wanted if row_id not in predicted]
        if prediction.error is not None or filled:
            reason = prediction.error or "shorter than sample_submission.csv expects"
            fill = fallback_rows(prediction.path, reason, len(ids), len(filled))
            block = pd.concat([block, fill], ignore_index=True)
            ids = ids + filled
        block.insert(0, "row_id", ids)
        blocks.append((stem, block))
    # soundscapes the sample submission lists but that have no audio file: their rows are kept
    for stem, wanted in expected_rows.items():
        if stem not in predicted_stems:
            reason = "no audio file for this soundscape of sample_submission.csv"
            block = fallback_rows(Path(stem), reason, 0, len(wanted))
            block.insert(0, "row_id", wanted)
            blocks.append((stem, block))
    columns = ["row_id", *classes]
    blocks.sort(key=lambda stem_and_rows: stem_and_rows[0])  # stable: same-stem files keep order
    submission = (
        pd.concat([rows for _, rows in blocks], ignore_index=True)
        if blocks
        else pd.DataFrame(columns=columns)
    )
    problem_table = pd.DataFrame(
        problems, columns=["filename", "reason", "predicted_rows", "filled_rows"]
    )
    log.info(
        "%d soundscape(s), %d row(s), %d problem(s)",
        len(predicted_stems),
        len(submission),
        len(problems),
    )
    return submission[columns], problem_table


def score_soundscapes(submission: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """The competition metric of a submission against window labels (row_id + class columns)."""
    from dawnchorus.metrics import birdclef_auc

    classes = [column for column in truth.columns if column != "row_id"]
    merged = truth.merge(submission, on="row_id", how="left", suffixes=("", "_predicted"))
    unmatched = merged[f"{classes[0]}_predicted"].isna()
    if unmatched.any():
        raise PredictionError(
            f"{int(unmatched.sum())} labelled window(s) have no prediction, e.g. "
            f"{merged.loc[unmatched, 'row_id'].iloc[0]}"
        )
    y_true = merged[classes].to_numpy()
    y_score = merged[[f"{label}_predicted" for label in classes]].to_numpy()
    auc = birdclef_auc(y_true, y_score)
    return {
        "macro_auc": auc.macro,
        "windows": len(merged),
        "scored_classes": int(auc.scored.sum()),
        "skipped_classes": auc.skipped(classes),
        "per_class_auc": {
            label: (None if np.isnan(value) else float(value))
            for label, value in zip(classes, auc.per_class, strict=True)
        },
    }


# --------------------------------------------------------------------------------------------
# users' own recordings


def detections_table(
    prediction: FilePrediction,
    classes: Sequence[str],
    window_s: float,
    top_k: int | None = None,
    threshold: float | None = None,
) -> pd.DataFrame:
    """Per-window probabilities of one recording.

    Wide (one column per class) unless `top_k` or `threshold` is given; then long: one row per
    window and kept class (the `top_k` most probable, those at or above `threshold`, or both),
    most probable first.
    """
    ends = np.asarray(prediction.end_s, dtype=np.float64)
    starts = np.round(ends - window_s, 3)
    keys = pd.DataFrame({"filename": str(prediction.path), "start_s": starts, "end_s": ends})
    probabilities = prediction.probabilities
    if top_k is None and threshold is None:
        return pd.concat([keys, pd.DataFrame(probabilities, columns=list(classes))], axis=1)
    order = np.argsort(-probabilities, axis=1, kind="stable")
    if top_k is not None:
        order = order[:, :top_k]
    window_index = np.repeat(np.arange(len(order)), order.shape[1])
    class_index = order.reshape(-1)
    scores = probabilities[window_index, class_index]
    rank = np.tile(np.arange(1, order.shape[1] + 1), len(order))
    keep = scores >= threshold if threshold is not None else np.ones(len(scores), dtype=bool)
    long = keys.iloc[window_index[keep]].reset_index(drop=True)
    long["rank"] = rank[keep]
    long["label"] = np.asarray(classes, dtype=object)[class_index[keep]]
    long["probability"] = scores[keep]
    return long


# --------------------------------------------------------------------------------------------
# workflow stages


def export_stage(
    model_paths: Sequence[str | Path],
    manifest_csv: str | Path,
    shard_paths: Sequence[str | Path],
    config: Mapping,
    out_path: str | Path,
    threads: int = 1,
) -> dict:
    """Rule export: the fold ensemble as TFLite, checked on real windows from the shards."""
    from dawnchorus.dataset import evaluation_windows
    from dawnchorus.manifest import read_manifest
    from dawnchorus.shards import ClipStore

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


def submission_stage(
    model_paths: Sequence[str | Path],
    soundscapes: Sequence[str | Path],
    classes_txt: str | Path,
    settings: Mapping,
    submission_csv: str | Path,
    problems_csv: str | Path,
    sample_submission: str | Path | None = None,
    threads: int = 1,
) -> None:
    """Rule predict: every test soundscape -> submission.csv (and problems.csv, maybe empty)."""
    from dawnchorus.manifest import read_classes

    ensemble = load_ensemble(model_paths, threads)
    log.info(
        "%s ensemble of %d fold model(s): %s",
        ensemble.engine,
        len(ensemble.sources),
        ", ".join(ensemble.sources),
    )
    submission, problems = soundscape_submission(
        soundscapes, ensemble, read_classes(classes_txt), settings, sample_submission
    )
    write_table(problems, problems_csv)
    write_table(submission, submission_csv)
