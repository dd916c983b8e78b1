"""HDF5 spectrogram shards: writing them atomically and reproducibly, and reading them back.

Layout (format version 1):
  mel                  (total_frames, n_mels) float16 log-mel dB, clips one after another
                       in filename order
  offset, n_frames     (n_clips,) int64: clip i is mel[offset[i] : offset[i] + n_frames[i]]
  filename             (n_clips,) utf-8
  quarantine_filename  (n_quarantined,) utf-8: recordings of this shard that were not stored ...
  quarantine_reason    (n_quarantined,) utf-8: ... and why
  attrs                format_version plus every feature parameter (AudioParams)

A shard is written under a temporary name and renamed when complete, so a killed job never leaves a
file that looks valid. Timestamps are off, so the same input gives a byte-identical file. That
machinery (`RaggedShardWriter`) also writes the BirdNET embedding shards (`pretrained.embeddings`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import h5py
import numpy as np
from tqdm import tqdm

from dawnchorus import __version__
from dawnchorus.config import AudioParams
from dawnchorus.signal.audio import AudioError, check_usable, load_audio
from dawnchorus.signal.features import log_mel

FORMAT_VERSION = 1
CHUNK_FRAMES = 128  # ~4 s of frames per HDF5 chunk: a 5-s window touches two or three chunks
_FLUSH_BYTES = 32 * 1024 * 1024

log = logging.getLogger(__name__)
_STRING = h5py.string_dtype("utf-8")


class ShardError(Exception):
    """A shard is missing, unreadable or was made with other feature parameters."""


def shard_path(spectrogram_dir: str | Path, shard: int) -> Path:
    return Path(spectrogram_dir) / f"shard_{shard:03d}.h5"


def _temporary_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete what killed writers of `path` left behind."""
    path = Path(path)
    stale = sorted(path.parent.glob(f"{path.name}.tmp-*"))
    for leftover in stale:
        leftover.unlink(missing_ok=True)
    return stale


class RaggedShardWriter:
    """Appends one block of rows per recording to an HDF5 file under a temporary name and renames
    it into place on success: the atomic, reproducible machinery of every shard kind.

    Layout: `data_name` (total_rows, width) with the recordings' blocks one after another,
    `offset` and `length_name` (int64 per recording), `filename`, `quarantine_filename` and
    `quarantine_reason` (utf-8); attrs `format_version`, `created_by`, the given `attrs`, `n_clips`
    and `n_quarantined`. Timestamps are off, so the same input gives a byte-identical file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        data_name: str,
        length_name: str,
        width: int,
        dtype: type,
        chunk_rows: int,
        format_version: int,
        attrs: Mapping[str, object],
    ):
        self.path = Path(path)
        self.data_name = data_name
        self.length_name = length_name
        self.width = width
        self.dtype = dtype
        self.chunk_rows = chunk_rows
        self.format_version = format_version
        self.attrs = dict(attrs)
        self._temporary = _temporary_path(self.path)
        self._filenames: list[str] = []
        self._lengths: list[int] = []
        self._quarantined: list[tuple[str, str]] = []
        self._pending: list[np.ndarray] = []
        self._pending_bytes = 0
        self._written_rows = 0
        self._file: h5py.File | None = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self._temporary, "w")
        self._data = self._file.create_dataset(
            self.data_name,
            shape=(0, self.width),
            maxshape=(None, self.width),
            dtype=self.dtype,
            chunks=(self.chunk_rows, self.width),
            track_times=False,
        )
        return self

    def add(self, filename: str, rows: np.ndarray) -> None:
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(
                f"{filename}: expected {self.data_name} of shape (n, {self.width}), "
                f"got {rows.shape}"
            )
        block = rows.astype(self.dtype)
        self._filenames.append(filename)
        self._lengths.append(len(block))
        self._pending.append(block)
        self._pending_bytes += block.nbytes
        if self._pending_bytes >= _FLUSH_BYTES:
            self._flush()

    def quarantine(self, filename: str, reason: str) -> None:
        self._quarantined.append((filename, reason))

    def _flush(self) -> None:
        if not self._pending:
            return
        block = np.concatenate(self._pending)
        start = self._written_rows
        self._data.resize(start + len(block), axis=0)
        self._data[start:] = block
        self._written_rows += len(block)
        self._pending, self._pending_bytes = [], 0

    def _finish(self) -> None:
        self._flush()
        lengths = np.asarray(self._lengths, dtype=np.int64)
        offsets = np.cumsum(lengths) - lengths  # an empty shard has none, not [0]
        datasets = {
            "offset": (offsets, np.int64),
            self.length_name: (lengths, np.int64),
            "filename": (self._filenames, _STRING),
            "quarantine_filename": ([name for name, _ in self._quarantined], _STRING),
            "quarantine_reason": ([reason for _, reason in self._quarantined], _STRING),
        }
        for name, (values, dtype) in datasets.items():
            self._file.create_dataset(
                name,
                data=np.asarray(values, dtype=object if dtype is _STRING else dtype),
                dtype=dtype,
                shape=(len(values),),
                track_times=False,
            )
        attrs = self._file.attrs
        attrs["format_version"] = self.format_version
        attrs["created_by"] = f"dawnchorus {__version__}"
        for name, value in self.attrs.items():
            attrs[name] = value
        attrs["n_clips"] = len(self._filenames)
        attrs["n_quarantined"] = len(self._quarantined)

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            self._file.close()
        if exc_type is not None:
            self._temporary.unlink(missing_ok=True)
            return
        with open(self._temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self._temporary, self.path)


class ShardWriter(RaggedShardWriter):
    """A spectrogram shard: log-mel clips (frames, n_mels) with every feature parameter."""

    def __init__(self, path: str | Path, params: AudioParams):
        super().__init__(
            path,
            data_name="mel",
            length_name="n_frames",
            width=params.n_mels,
            dtype=np.float16,
            chunk_rows=CHUNK_FRAMES,
            format_version=FORMAT_VERSION,
            attrs={
                **params.feature_attrs(),
                "feature_params": json.dumps(params.feature_attrs(), sort_keys=True),
                "max_duration_s": (
                    np.nan if params.max_duration_s is None else float(params.max_duration_s)
                ),
                "db_reference": 1.0,
            },
        )
        self.params = params


@dataclass
class ShardSummary:
    stored: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    stored_seconds: float = 0.0


def decoded_recordings(
    recordings: Iterable[tuple[str, str | Path]],
    writer: RaggedShardWriter,
    sample_rate: int,
    max_duration_s: float | None,
    min_peak_dbfs: float,
    quarantined: list[tuple[str, str]],
    progress_name: str | None = None,
    check: Callable[[np.ndarray], None] | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """(filename, mono samples) of every (filename, audio path) in filename order, whatever order
    they come in, that decodes without NaN/inf or silence and passes `check` (which raises
    AudioError); every other one is quarantined on `writer` and in `quarantined` with its reason.
    """
    ordered = sorted(recordings, key=lambda item: item[0])
    for filename, audio_path in tqdm(
        ordered, desc=progress_name, disable=progress_name is None, mininterval=10
    ):
        try:
            samples = load_audio(audio_path, sample_rate, max_duration_s)
            check_usable(samples, min_peak_dbfs)
            if check is not None:
                check(samples)
        except AudioError as error:
            log.warning("quarantined %s: %s", filename, error)
            writer.quarantine(filename, str(error))
            quarantined.append((filename, str(error)))
            continue
        yield filename, samples


def build_shard(
    recordings: Iterable[tuple[str, str | Path]],
    out_path: str | Path,
    params: AudioParams,
    progress: bool = False,
) -> ShardSummary:
    """Decode, check and log-mel every (filename, audio path) into one shard at `out_path`.

    Recordings are stored in filename order whatever order they come in. One that cannot be decoded,
    decodes to NaN/inf or silence, or is shorter than one FFT window is quarantined with its reason.
    """
    remove_stale_temporaries(out_path)
    summary = ShardSummary()

    def longer_than_one_fft_window(samples: np.ndarray) -> None:
        if len(samples) < params.n_fft:
            raise AudioError(
                f"shorter than one FFT window ({len(samples)} < {params.n_fft} samples)"
            )

    with ShardWriter(out_path, params) as writer:
        for filename, samples in decoded_recordings(
            recordings,
            writer,
            params.sample_rate,
            params.max_duration_s,
            params.min_peak_dbfs,
            summary.quarantined,
            Path(out_path).name if progress else None,
            check=longer_than_one_fft_window,
        ):
            writer.add(filename, log_mel(samples, params))
            summary.stored += 1
            summary.stored_seconds += len(samples) / params.sample_rate
    return summary


@dataclass(frozen=True)
class Shard:
    """An open shard: clip table in memory, `mel` read lazily from disk."""

    path: Path
    file: h5py.File
    filenames: np.ndarray
    offsets: np.ndarray
    n_frames: np.ndarray

    @property
    def mel(self) -> h5py.Dataset:
        return self.file["mel"]

    def clip(self, index: int) -> np.ndarray:
        start = int(self.offsets[index])
        return self.mel[start : start + int(self.n_frames[index])]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Shard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_format(path: Path, handle: h5py.File, params: AudioParams | None) -> None:
    version = handle.attrs.get("format_version")
    if version != FORMAT_VERSION:
        raise ShardError(f"{path}: shard format version {version}, expected {FORMAT_VERSION}")
    if params is None:
        return
    stored = json.loads(handle.attrs["feature_params"])
    expected = params.feature_attrs()
    differing = {
        key: (stored.get(key), value) for key, value in expected.items() if stored.get(key) != value
    }
    if differing:
        details = ", ".join(
            f"{key} {old} in shard vs {new} in config" for key, (old, new) in differing.items()
        )
        raise ShardError(
            f"{path} was made with other feature parameters than the config ({details}); "
            "rerun the spectrograms rule (e.g. snakemake --forcerun spectrograms)"
        )


def open_shard(path: str | Path, params: AudioParams | None = None) -> Shard:
    """Open a shard; with `params`, refuse one made with other feature parameters."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: shard file is missing")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ShardError(f"{path}: not a readable HDF5 shard ({error})") from None
    try:
        _check_format(path, handle, params)
        return Shard(
            path=path,
            file=handle,
            filenames=handle["filename"].asstr()[:],
            offsets=handle["offset"][:],
            n_frames=handle["n_frames"][:],
        )
    except Exception:
        handle.close()
        raise


class ClipStore:
    """Read access to the frames of given recordings across shards, cached in RAM if they fit."""

    def __init__(
        self,
        shard_paths: Sequence[str | Path],
        params: AudioParams,
        filenames: Sequence[str],
        ram_budget_mb: float,
    ):
        self.params = params
        self._shards: list[Shard] = [open_shard(path, params) for path in shard_paths]
        location = {}
        for shard_index, shard in enumerate(self._shards):
            for name, offset, n in zip(shard.filenames, shard.offsets, shard.n_frames, strict=True):
                location[name] = (shard_index, int(offset), int(n))
        self.missing = [name for name in filenames if name not in location]
        self.available = np.array([name in location for name in filenames])
        self._location = [location.get(name, (-1, 0, 0)) for name in filenames]
        self.n_frames = np.array([n for _, _, n in self._location], dtype=np.int64)
        needed = {shard for shard, _, _ in self._location if shard >= 0}
        size_mb = sum(self._shards[s].mel.size * 2 for s in needed) / 2**20
        self.in_memory = size_mb <= ram_budget_mb
        self._arrays: dict[int, np.ndarray] = {}
        if self.in_memory:
            for shard in sorted(needed):
                self._arrays[shard] = self._shards[shard].mel[:]
        log.info(
            "%d recording(s) in %d shard(s), %.0f MB of spectrograms: %s",
            int(self.available.sum()),
            len(needed),
            size_mb,
            "cached in memory"
            if self.in_memory
            else f"streamed from disk (above training.cache_ram_mb={ram_budget_mb})",
        )

    def frames(self, row: int, start: int = 0, length: int | None = None) -> np.ndarray:
        """Frames [start, start + length) of recording `row`, float16 (frames, n_mels)."""
        shard, offset, n_frames = self._location[row]
        if shard < 0:
            raise KeyError(f"recording {row} is in no shard")
        length = n_frames - start if length is None else length
        begin, end = offset + start, offset + start + length
        source = self._arrays.get(shard)
        if source is None:
            return self._shards[shard].mel[begin:end]
        return source[begin:end]

    def close(self) -> None:
        for shard in self._shards:
            shard.close()
