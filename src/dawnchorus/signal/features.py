"""Log-mel spectrograms: the one feature function used by precomputation and by inference.

Numerically this is `librosa.power_to_db(librosa.feature.melspectrogram(...), ref=1.0,
top_db=None)` with librosa's defaults (periodic Hann window, centred frames padded with zeros,
Slaney mel scale and normalisation); a test holds it to librosa. It is written with numpy/scipy
because librosa's STFT path compiles numba kernels on first use (10-15 s per fresh process),
which every shard job and every prediction process would pay.

The dB reference is fixed (1.0) and nothing is clipped relative to the clip's maximum, so stored
values are comparable across clips; normalisation belongs to the input pipeline.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft

from dawnchorus.config import AudioParams

AMIN = 1e-10  # power floor: -100 dB
_FRAMES_PER_BLOCK = 2048  # bounds the STFT's working memory for long recordings


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


@lru_cache(maxsize=8)
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """Triangular Slaney-normalised filters, shape (n_fft // 2 + 1, n_mels), float32."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    filterbank = np.ascontiguousarray(weights.T, dtype=np.float32)
    filterbank.setflags(write=False)
    return filterbank


def band_centres_hz(params: AudioParams) -> np.ndarray:
    """(n_mels,) centre frequency of each mel band, lowest first."""
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(params.fmin), _hz_to_mel(params.fmax), params.n_mels + 2)
    )
    return edges[1:-1]


@lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    window.setflags(write=False)
    return window


def n_frames_for(n_samples: int, hop_length: int) -> int:
    """Frames `log_mel` returns for `n_samples` samples (centred framing)."""
    return 1 + n_samples // hop_length


def log_mel(samples: np.ndarray, params: AudioParams) -> np.ndarray:
    """Log-mel power spectrogram in dB (ref 1.0, floor -100 dB): shape (frames, n_mels), float32.

    `samples` is mono audio at `params.sample_rate` (see `audio.load_audio`).
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"log_mel expects mono audio, got shape {samples.shape}")
    n_fft, hop = params.n_fft, params.hop_length
    padded = np.pad(samples, n_fft // 2)
    n_frames = n_frames_for(len(samples), hop)
    needed = (n_frames - 1) * hop + n_fft
    if len(padded) < needed:  # clips shorter than n_fft // 2 samples
        padded = np.pad(padded, (0, needed - len(padded)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
    filterbank = mel_filterbank(params.sample_rate, n_fft, params.n_mels, params.fmin, params.fmax)
    window = _hann(n_fft)
    out = np.empty((n_frames, params.n_mels), dtype=np.float32)
    for start in range(0, n_frames, _FRAMES_PER_BLOCK):
        block = frames[start : start + _FRAMES_PER_BLOCK] * window
        spectrum = scipy.fft.rfft(block, axis=1)
        power = spectrum.real**2 + spectrum.imag**2
        np.matmul(power, filterbank, out=out[start : start + len(block)])
    np.maximum(out, AMIN, out=out)
    np.log10(out, out=out)
    out *= 10.0
    return out


def covering_starts(n_frames: int, crop_frames: int, max_crops: int, hops: int = 1) -> list[int]:
    """Crops that cover a recording from its start: `hops` per crop length (1 = consecutive,
    2 = each overlapping the one before by half), over at most the first `max_crops` crop
    lengths, plus one ending at the recording's end when that span reaches it and a tail is left
    over; one (repeated) crop for a recording shorter than a crop."""
    if n_frames <= crop_frames:
        return [0]
    span = min(n_frames, max_crops * crop_frames)
    step = max(1, crop_frames // hops)
    starts = list(range(0, span - crop_frames + 1, step))
    tail_start = n_frames - crop_frames
    if span == n_frames and tail_start > starts[-1]:
        starts.append(tail_start)
    return starts


def cut_window(frames: np.ndarray, start: int, window_frames: int) -> np.ndarray:
    """`window_frames` frames from `start`; a short recording is repeated end to end to fill it."""
    n_frames = len(frames)
    if n_frames >= window_frames:
        return frames[start : start + window_frames]
    repeats = -(-(start + window_frames) // n_frames)
    return np.concatenate([frames] * repeats)[start : start + window_frames]
