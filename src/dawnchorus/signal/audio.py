"""Reading audio: header probing for the manifest, decoding to mono float32 at the working rate.

libsndfile (through soundfile) decodes OGG/Vorbis, FLAC, WAV and MP3 without any system package;
formats it does not know fall back to librosa (audioread, which needs ffmpeg or GStreamer).
Resampling uses soxr's high-quality mode, the resampler librosa itself defaults to.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

_READ_BLOCK_FRAMES = 1 << 16
# what find_recordings picks from a folder
AUDIO_SUFFIXES = frozenset({".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3", ".aif", ".aiff"})


class AudioError(Exception):
    """A recording cannot be used; the message is the reason recorded in the quarantine."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def probe_audio(path: str | Path) -> AudioInfo:
    """Header facts of a recording. Raises AudioError with a human-readable reason."""
    path = Path(path)
    if not path.exists():
        raise AudioError("file not found")
    if not path.is_file():
        raise AudioError("not a regular file")
    if path.stat().st_size == 0:
        raise AudioError("empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except Exception as sf_error:  # libsndfile raises several types; all mean "cannot read"
        info = _probe_with_fallback(path, sf_error)
    else:
        info = AudioInfo(int(info.samplerate), int(info.channels), int(info.frames), info.format)
    if info.sample_rate <= 0:
        raise AudioError(f"invalid sample rate {info.sample_rate}")
    if info.channels <= 0:
        raise AudioError(f"invalid channel count {info.channels}")
    if info.frames <= 0:
        raise AudioError("no audio frames")
    return info


def _probe_with_fallback(path: Path, sf_error: Exception) -> AudioInfo:
    try:
        import audioread

        with audioread.audio_open(str(path)) as handle:
            return AudioInfo(
                int(handle.samplerate),
                int(handle.channels),
                round(handle.duration * handle.samplerate),
                path.suffix.lstrip(".").upper() or "unknown",
            )
    except Exception as fallback_error:
        raise AudioError(
            f"unreadable audio header: {_short(sf_error)}; "
            f"fallback decoder: {_short(fallback_error)}"
        ) from None


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.replace(str(Path.cwd()) + "/", "")[:200]


def load_audio(
    path: str | Path, sample_rate: int, max_duration_s: float | None = None
) -> np.ndarray:
    """Decode `path` to mono float32 at `sample_rate`, keeping at most `max_duration_s` seconds.

    Only the needed part is decoded, so a two-hour file costs no more memory than its first minute.
    Raises AudioError when the file cannot be decoded.
    """
    try:
        samples, native_rate = _read_soundfile(path, max_duration_s)
    except Exception as sf_error:  # libsndfile raises several types; all mean "cannot decode"
        samples, native_rate = _read_with_fallback(path, max_duration_s, sf_error)
    if samples.size == 0:
        raise AudioError("decoded to no samples")
    if native_rate != sample_rate:
        samples = soxr.resample(samples, native_rate, sample_rate, quality="HQ")
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if max_duration_s is not None:
        samples = samples[: math.ceil(max_duration_s * sample_rate)]
    return samples


def _read_soundfile(path: str | Path, max_duration_s: float | None) -> tuple[np.ndarray, int]:
    with sf.SoundFile(str(path)) as handle:
        native_rate = int(handle.samplerate)
        wanted = handle.frames
        if max_duration_s is not None:
            wanted = min(wanted, math.ceil(max_duration_s * native_rate))
        blocks = []
        remaining = wanted
        while remaining > 0:
            block = handle.read(min(_READ_BLOCK_FRAMES, remaining), dtype="float32", always_2d=True)
            if len(block) == 0:
                break  # truncated file: the header promised more than the stream holds
            blocks.append(_downmix(block))
            remaining -= len(block)
    samples = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    return samples, native_rate


def stream_audio(path: str | Path, sample_rate: int, block_s: float = 30.0) -> Iterator[np.ndarray]:
    """Decode `path` block by block to mono float32 at `sample_rate`.

    Memory stays bounded by the block, whatever the recording's length. Formats libsndfile cannot
    read are decoded whole by the fallback decoder. Raises AudioError when nothing can be decoded,
    or when decoding fails part-way (after yielding the blocks before: the caller decides what to
    keep).
    """
    try:
        handle = sf.SoundFile(str(path))
    except Exception:  # libsndfile raises several types; all mean "cannot open"
        yield load_audio(path, sample_rate)  # its fallback decoder, whole
        return
    with handle:
        native_rate = int(handle.samplerate)
        resampler = (
            soxr.ResampleStream(native_rate, sample_rate, 1, dtype="float32", quality="HQ")
            if native_rate != sample_rate
            else None
        )
        block_frames = max(1, round(block_s * native_rate))
        decoded = 0
        while True:
            try:
                block = handle.read(block_frames, dtype="float32", always_2d=True)
            except Exception as error:  # a stream corrupt beyond its header
                raise AudioError(
                    f"cannot decode after {decoded / native_rate:.1f} s: {_short(error)}"
                ) from None
            last = len(block) < block_frames
            samples = _downmix(block) if len(block) else np.zeros(0, dtype=np.float32)
            decoded += len(block)
            if resampler is not None:
                samples = resampler.resample_chunk(samples, last=last)
            if samples.size:
                yield samples
            if last:
                break
        if decoded == 0:
            raise AudioError("decoded to no samples")


def _downmix(block: np.ndarray) -> np.ndarray:
    if block.shape[1] == 1:
        return block[:, 0]
    # a matrix-vector product: numpy's mean over a short axis is several times slower
    return block @ np.full(block.shape[1], 1 / block.shape[1], dtype=np.float32)


def _read_with_fallback(
    path: str | Path, max_duration_s: float | None, sf_error: Exception
) -> tuple[np.ndarray, int]:
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns that it fell back to audioread
            samples, native_rate = librosa.load(
                str(path), sr=None, mono=True, duration=max_duration_s, dtype=np.float32
            )
        return samples, int(native_rate)
    except Exception as fallback_error:
        raise AudioError(
            f"cannot decode: {_short(sf_error)}; fallback decoder: {_short(fallback_error)}"
        ) from None


def peak_dbfs(samples: np.ndarray) -> float:
    """Peak level in dB full scale (-inf for digital silence)."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def check_usable(samples: np.ndarray, min_peak_dbfs: float) -> None:
    """Raise AudioError for audio that would poison training: NaN/inf samples or silence."""
    finite = np.isfinite(samples)
    if not finite.all():
        raise AudioError(f"decoded audio contains {int((~finite).sum())} NaN/inf samples")
    level = peak_dbfs(samples)
    if level < min_peak_dbfs:
        raise AudioError(f"silent: peak {level:.1f} dBFS is below audio.min_peak_dbfs")


def last_partial_window(
    tail: np.ndarray, window_samples: int, first: bool, min_samples: float
) -> np.ndarray | None:
    """The window made of a recording's last `tail` samples (shorter than a window), filled by
    repeating its own audio so that it holds no artificial silence; None when the tail is
    shorter than `min_samples` and not the recording's only (`first`) window."""
    if tail.size and (first or tail.size >= min_samples):
        return np.resize(tail, window_samples)  # np.resize repeats the array cyclically
    return None


def find_recordings(paths: Iterable[str | Path]) -> list[Path]:
    """Files given, and audio files found under folders given (recursively, sorted)."""
    return [recording for recording, _ in find_recordings_in(paths)]


def find_recordings_in(paths: Iterable[str | Path]) -> list[tuple[Path, Path | None]]:
    """`find_recordings`, each with the folder given that it was found in (None: given itself)."""
    found: list[tuple[Path, Path | None]] = []
    for item in map(Path, paths):
        if item.is_dir():
            found += [
                (path, item)
                for path in sorted(item.rglob("*"))
                if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES
            ]
        elif item.exists():
            found.append((item, None))
        else:
            raise FileNotFoundError(f"'{item}' does not exist")
    return found
