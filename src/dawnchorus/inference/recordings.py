"""Recordings -> consecutive windows -> log-mel -> the ensemble's probabilities, per window.

Features come from `features.log_mel`, the code that filled the training shards, and are rounded
to float16 as the shards store them, so a model sees at prediction what it saw in training.

Recordings are streamed (decoded block by block, cut into windows as they come), so a two-hour
file costs no more memory than a minute of it. Decoding and features of the next windows run in
a background thread while the model works on the current batch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from dawnchorus.config import AudioParams
from dawnchorus.inference.engines import Ensemble, PredictionError
from dawnchorus.inference.postprocess import NO_SMOOTHING, merge_overlapping_windows, postprocess
from dawnchorus.signal.audio import AudioError, last_partial_window, stream_audio
from dawnchorus.signal.features import log_mel

_QUEUED_BATCHES = 4  # decoded batches waiting for the model: bounds memory, keeps it busy


def recording_windows(
    path: str | Path, params: AudioParams, min_last_window_s: float
) -> Iterator[np.ndarray]:
    """Consecutive windows of `params.window_s` seconds (mono samples at the model's rate).

    A last partial window of at least `min_last_window_s` (or a recording shorter than one
    window) is filled by repeating its own audio, as training fills short recordings, so it never
    holds artificial silence. Raises AudioError when decoding fails (after the windows it could
    cut).
    """
    blocks = stream_audio(path, params.sample_rate)
    for samples, _ in _windows_and_wholeness(blocks, params, min_last_window_s):
        yield samples


def _windows_and_wholeness(
    blocks: Iterator[np.ndarray], params: AudioParams, min_last_window_s: float
) -> Iterator[tuple[np.ndarray, bool]]:
    """`recording_windows` of a recording's decoded `blocks`, each with whether it is whole
    audio (False: a filled last one)."""
    size = params.window_samples
    pending = np.zeros(0, dtype=np.float32)
    yielded = 0

    def last_window():
        return last_partial_window(
            pending, size, yielded == 0, min_last_window_s * params.sample_rate
        )

    try:
        for block in blocks:
            pending = np.concatenate([pending, block]) if pending.size else block
            n_full = len(pending) // size
            for i in range(n_full):
                yield pending[i * size : (i + 1) * size], True
            yielded += n_full
            pending = pending[n_full * size :]
    except AudioError:
        # a recording cut short: what was decoded before the cut ends as any recording's tail
        if (last := last_window()) is not None:
            yield last, False
        raise
    if (last := last_window()) is not None:
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


@dataclass
class FilePrediction:
    """The windows of one recording: where each ends, their probabilities, and a decoding
    problem if there was one (then `probabilities` holds the windows before it); `notes`: what
    else a reader of the predictions should know (a blend member that could not read it);
    `duration_s`: the seconds decoded (None: not known), where the outputs' last window ends
    (`end_s` is the window grid's: a last window filled from a shorter tail ends after it)."""

    path: Path
    end_s: list[int | float]
    probabilities: np.ndarray
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    duration_s: float | None = None


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
            decoded_s, error = decode_file(index, path)
            put((index, None, decoded_s, error))  # the recording is complete
            if stop.is_set():
                return

    def decode_file(index: int, path) -> tuple[float, str | None]:
        """Queue the recording's windows in batches; the seconds decoded and the recording's
        decoding problem, if any."""
        # a row's own windows, and those between two rows, go to the model in batches apart
        pending: dict[str, list[np.ndarray]] = {"rows": [], "between": []}

        def add(kind: str, samples: np.ndarray) -> None:
            pending[kind].append(window_features(samples, params))
            if len(pending[kind]) == batch_size:
                put((index, kind, np.stack(pending[kind]), None))
                pending[kind] = []

        previous = None  # the last whole window, for the windows between it and the next
        error = None
        decoded = 0

        def counted(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            nonlocal decoded
            for block in blocks:
                decoded += len(block)
                yield block

        try:
            blocks = counted(stream_audio(path, params.sample_rate))
            for samples, whole in _windows_and_wholeness(blocks, params, min_last_window_s):
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
        return decoded / params.sample_rate, error

    producer = threading.Thread(target=decode_all, name="decode", daemon=True)
    producer.start()
    outputs: dict[str, list[np.ndarray]] = {"rows": [], "between": []}
    n_classes = len(ensemble.classes)

    def collected(kind: str) -> np.ndarray:
        found = outputs[kind]
        return np.concatenate(found) if found else np.zeros((0, n_classes), dtype=np.float32)

    try:
        while (item := batches.get()) is not _END:
            # a batch of windows, or the recording's end (no kind; its duration decoded)
            index, kind, windows_or_duration, error = item
            if index is None:
                raise error
            if kind is not None:
                outputs[kind].append(ensemble.predict(windows_or_duration))
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
                duration_s=round(windows_or_duration, 3),
            )
    finally:
        stop.set()
        producer.join()
