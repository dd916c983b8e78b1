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
# MP3 decoders may give up to a frame of encoder padding less than the header's count
_TRUNCATION_TOLERANCE_S = 0.1
_OGG_TAIL_BYTES = 1 << 17  # the last page of an Ogg stream is at most 65,307 bytes
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
            _undecodable(path, "unreadable audio header", sf_error, fallback_error)
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
    except AudioError:  # libsndfile read it and found it truncated: no fallback can do better
        raise
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
    """Raises AudioError for a recording truncated inside the part asked for (the header
    promised more, or the stream breaks off): a training clip is never silently shorter."""
    with sf.SoundFile(str(path)) as handle:
        native_rate = int(handle.samplerate)
        wanted = handle.frames
        if max_duration_s is not None:
            wanted = min(wanted, math.ceil(max_duration_s * native_rate))
        blocks = []
        decoded = 0
        while decoded < wanted:
            try:
                block = handle.read(
                    min(_READ_BLOCK_FRAMES, wanted - decoded), dtype="float32", always_2d=True
                )
            except Exception as error:  # libsndfile raises several types for a broken stream
                raise AudioError(
                    _broken_stream(path, handle.frames, decoded, native_rate, error)
                ) from None
            if len(block) == 0:
                break
            blocks.append(_downmix(block))
            decoded += len(block)
        reached_end = wanted == handle.frames
        if reached_end and (problem := end_problem(path, handle.frames, decoded, native_rate)):
            raise AudioError(problem)
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
        broken = None
        while broken is None:
            block, broken = _read_block(handle, block_frames)
            last = broken is not None or len(block) < block_frames
            samples = _downmix(block) if len(block) else np.zeros(0, dtype=np.float32)
            decoded += len(block)
            if resampler is not None:
                samples = resampler.resample_chunk(samples, last=last)
            if samples.size:
                yield samples
            if last:
                break
        if broken is not None:
            raise AudioError(_broken_stream(path, handle.frames, decoded, native_rate, broken))
        if decoded == 0:
            raise AudioError("decoded to no samples")
        if problem := end_problem(path, handle.frames, decoded, native_rate):
            raise AudioError(problem)


def _read_block(handle: sf.SoundFile, frames: int) -> tuple[np.ndarray, Exception | None]:
    """Up to `frames` frames (frames, channels), read in pieces: a stream that breaks off (a
    truncated FLAC) loses only the piece it breaks in, and the error comes with what was read."""
    pieces, remaining = [], frames
    while remaining > 0:
        try:
            piece = handle.read(min(_READ_BLOCK_FRAMES, remaining), dtype="float32", always_2d=True)
        except Exception as error:  # libsndfile raises several types for a corrupt stream
            return _joined(pieces, handle.channels), error
        if len(piece) == 0:
            break
        pieces.append(piece)
        remaining -= len(piece)
    return _joined(pieces, handle.channels), None


def _joined(pieces: list[np.ndarray], channels: int) -> np.ndarray:
    if not pieces:
        return np.zeros((0, channels), dtype=np.float32)
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _seconds(frames: int, rate: int) -> str:
    return f"{frames / rate:.1f}"


def _broken_stream(path, header_frames: int, decoded: int, rate: int, error: Exception) -> str:
    """The reason for a stream that breaks off while decoding (a truncated FLAC, say)."""
    expected = _expected_frames(path, header_frames)
    if expected > decoded:
        return f"truncated: {_seconds(decoded, rate)} of {_seconds(expected, rate)} s decoded"
    return f"cannot decode after {_seconds(decoded, rate)} s: {_short(error)}"


def end_problem(path: str | Path, header_frames: int, decoded: int, rate: int) -> str | None:
    """Why a recording decoded to its end holds less than it should: fewer frames than its
    header says (libsndfile's count, or a WAV's data chunk, which libsndfile trims to what the
    file holds), or an Ogg stream that stops without its last page (libsndfile counts only the
    pages there). None when it is whole."""
    expected = _expected_frames(path, header_frames)
    if decoded < expected - _TRUNCATION_TOLERANCE_S * rate:
        return f"truncated: {_seconds(decoded, rate)} of {_seconds(expected, rate)} s decoded"
    if ogg_stream_unfinished(path):
        return (
            f"truncated: the Ogg stream stops without its end after {_seconds(decoded, rate)} s "
            "(the file was cut short)"
        )
    return None


def _expected_frames(path: str | Path, header_frames: int) -> int:
    """The frames the file says it holds: libsndfile's count, or a WAV's own data chunk size
    when larger (libsndfile trims that one to what the file holds)."""
    return max(header_frames, wav_header_frames(path) or 0)


def wav_header_frames(path: str | Path) -> int | None:
    """The frames a RIFF/WAVE file's data chunk says it holds; None for another format, a
    header without a data size (0 or 0xFFFFFFFF: a recorder that never finished it) or one
    that cannot be read."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    position, block_align = 12, None
    while position + 8 <= len(head):
        chunk, size = (
            head[position : position + 4],
            int.from_bytes(head[position + 4 : position + 8], "little"),
        )
        if chunk == b"fmt " and position + 22 <= len(head):
            block_align = int.from_bytes(head[position + 20 : position + 22], "little")
        if chunk == b"data":
            if not block_align or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        position += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


def ogg_stream_unfinished(path: str | Path) -> bool:
    """Whether an Ogg file (Vorbis, Opus, FLAC in Ogg) stops before its stream's end: its last
    whole page (one whose checksum holds) is not the end of the file, or lacks the
    end-of-stream flag. False for other formats."""
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"OggS":
                return False
            size = handle.seek(0, 2)
            handle.seek(max(0, size - _OGG_TAIL_BYTES))
            tail = handle.read()
    except OSError:
        return False
    tail_start = size - len(tail)
    at = len(tail)
    while (at := tail.rfind(b"OggS", 0, at)) >= 0:
        page = _ogg_page(tail, at)
        if page is not None:
            end, flags = page
            return tail_start + end != size or not flags & 0x04
    return True  # no whole page in the last 128 KiB: cut inside a page


def _ogg_page(data: bytes, at: int) -> tuple[int, int] | None:
    """(end offset, header flags) of the Ogg page starting at `at` in `data` when it is whole
    and its CRC holds (the capture pattern can occur inside a page's audio); else None."""
    if at + 27 > len(data) or data[at + 4] != 0:
        return None
    n_segments = data[at + 26]
    body_start = at + 27 + n_segments
    if body_start > len(data):
        return None
    end = body_start + sum(data[at + 27 : body_start])
    if end > len(data):
        return None
    page = bytearray(data[at:end])
    stored = int.from_bytes(page[22:26], "little")
    page[22:26] = b"\0\0\0\0"
    return (end, data[at + 5]) if _ogg_crc(page) == stored else None


def _ogg_crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_OGG_CRC_TABLE = _ogg_crc_table()


def _ogg_crc(data: bytes) -> int:
    """Ogg's page checksum: CRC-32, polynomial 0x04C11DB7, not reflected, initial value 0."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC_TABLE[(crc >> 24) ^ byte]
    return crc


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
        raise AudioError(_undecodable(path, "cannot decode", sf_error, fallback_error)) from None


# the first bytes of the audio formats either decoder reads (MPEG audio: a frame sync)
_AUDIO_SIGNATURES = (b"OggS", b"fLaC", b"RIFF", b"RF64", b"FORM", b"ID3", b"caff", b"wvpk", b".snd")


def _undecodable(
    path: str | Path, what: str, sf_error: Exception, fallback_error: Exception
) -> str:
    """A reason a person can act on for a file neither decoder reads."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError as error:
        return f"cannot read the file: {error.strerror or error}"
    if not head:
        return "empty file (0 bytes)"
    mpeg_sync = len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
    if not (head.startswith(_AUDIO_SIGNATURES) or mpeg_sync or head[4:8] == b"ftyp"):
        return "not an audio file (its first bytes are no audio format's)"
    return f"{what}: {_short(sf_error)}; fallback decoder: {_short(fallback_error)}"


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
