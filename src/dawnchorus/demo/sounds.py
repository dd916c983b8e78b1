"""Sound synthesis for the demo data: vocalisations, backgrounds, distractors, propagation.

Vocalisations are built from syllables of a few families that real animals use:
  whistle   one or two partials along a pitch contour (glide, arch, dip) with vibrato
  stack     a harmonic stack (low fundamental, many partials under a spectral envelope) with FM
  formant   a pulse source through moving resonances: croaks, caws, vowel-like sounds
  noisy     a broadband burst (a band of noise with a sharp attack): chips, chacks
  buzz      a narrow noise band, amplitude-modulated, sliding through a band
  trill     rapid repeats of a short glide
  pulses    insect stridulation: trains of short high-frequency clicks
A syllable rendered `reverse`d is the same sound played backwards: the same average spectrum with
the opposite shape in time, which is how look-alike species differ here.

Every renderer takes a numpy Generator and is deterministic for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.signal

SYLLABLE_KINDS = ("whistle", "stack", "formant", "noisy", "buzz", "trill", "pulses")


@dataclass(frozen=True)
class Syllable:
    """One vocal element. Frequencies in Hz, times in seconds."""

    kind: str
    duration_s: float
    f_start: float  # pitch (whistle, trill element), fundamental (stack, formant), band centre
    f_end: float
    contour: str = "glide"  # glide | arch | dip: how the frequency moves from f_start to f_end
    vibrato_hz: float = 0.0
    vibrato_depth: float = 0.0  # relative frequency deviation
    harmonics: int = 1
    rolloff: float = 0.4  # amplitude ratio of successive partials (whistle, stack)
    bandwidth: float = 0.3  # noise band width relative to its centre (noisy, buzz, pulses)
    rate_hz: float = 0.0  # AM rate (buzz), element rate (trill), click rate (pulses)
    formants: tuple[float, ...] = ()  # resonance centres (formant, stack spectral envelope)
    formant_shift: float = 1.0  # resonances end at this multiple of their start
    reverse: bool = False

    @property
    def highest_hz(self) -> float:
        """Roughly the highest frequency with energy (for choosing a sample rate)."""
        top = max(self.f_start, self.f_end) * (1 + self.vibrato_depth)
        if self.kind in ("noisy", "buzz", "pulses"):
            return top * (1 + self.bandwidth / 2)
        if self.kind in ("stack", "formant"):
            return max(
                [top * self.harmonics, *(f * max(1.0, self.formant_shift) for f in self.formants)]
            )
        return top * self.harmonics


def _envelope(n: int, attack: float = 0.1, release: float = 0.2) -> np.ndarray:
    """Raised-cosine attack and release, as fractions of the length."""
    env = np.ones(n)
    rise, fall = max(1, int(n * attack)), max(1, int(n * release))
    env[:rise] *= 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, rise))
    env[n - fall :] *= (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fall)))[::-1]
    return env


def _contour(shape: str, start: float, end: float, n: int) -> np.ndarray:
    """Frequency (Hz) over `n` samples, moving in equal pitch steps."""
    t = np.linspace(0.0, 1.0, n)
    low, high = np.log(start), np.log(end)
    if shape == "glide":
        return np.exp(low + (high - low) * t)
    if shape == "arch":  # start -> end -> start
        return np.exp(low + (high - low) * np.sin(np.pi * t))
    if shape == "dip":  # start -> end quickly, then level
        return np.exp(low + (high - low) * (1 - np.exp(-5 * t)) / (1 - np.exp(-5)))
    raise ValueError(f"unknown contour {shape!r}")


def _partials(freq: np.ndarray, sr: int, amplitudes: np.ndarray, phase0: float) -> np.ndarray:
    """Sum of partials k*freq with per-partial amplitudes (k = 1..len), silent above 0.45 sr.

    `amplitudes` is (partials,) or (partials, samples) for a time-varying spectral envelope."""
    phase = 2 * np.pi * np.cumsum(freq) / sr + phase0
    out = np.zeros(len(freq))
    amplitudes = np.asarray(amplitudes, dtype=np.float64)
    for k in range(1, len(amplitudes) + 1):
        audible = k * freq < 0.45 * sr
        if not audible.any():
            break
        out += np.where(audible, np.sin(k * phase), 0.0) * amplitudes[k - 1]
    return out


# Noise longer than this is one period of this length repeated: an inverse FFT is periodic, so
# the repetition is seamless, and a few seconds' period is far longer than anything it colours.
_NOISE_PERIOD = 2**20


def _spectrally_shaped(n: int, sr: int, rng: np.random.Generator, gain) -> np.ndarray:
    """Unit-RMS noise of length `n` whose spectrum is white noise's times gain(freqs)."""
    size = scipy.fft.next_fast_len(min(max(n, 16), _NOISE_PERIOD), real=True)  # fast lengths
    spectrum = scipy.fft.rfft(rng.standard_normal(size)) * gain(scipy.fft.rfftfreq(size, 1 / sr))
    noise = scipy.fft.irfft(spectrum, size)
    noise = np.tile(noise, -(-n // size))[:n]
    return noise / (np.std(noise) + 1e-12)


def _band_noise(n: int, sr: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise between `low` and `high` Hz."""
    return _spectrally_shaped(
        n, sr, rng, lambda freqs: (freqs >= low) & (freqs <= min(high, 0.48 * sr))
    )


def _resonance(freqs: np.ndarray, centre: np.ndarray, width: float) -> np.ndarray:
    return 1.0 / (1.0 + ((freqs - centre) / width) ** 2)


def render_syllable(
    syllable: Syllable, sr: int, rng: np.random.Generator, pitch: float = 1.0, tempo: float = 1.0
) -> np.ndarray:
    """One syllable at sample rate `sr`, peak 1. `pitch` scales frequencies, `tempo` durations."""
    s = syllable
    n = max(16, int(s.duration_s * tempo * sr))
    start, end = s.f_start * pitch, s.f_end * pitch
    nyquist_guard = 0.45 * sr
    if s.kind in ("whistle", "stack", "formant"):
        freq = _contour(s.contour, start, end, n)
        if s.vibrato_hz:
            t = np.arange(n) / sr
            freq = freq * (
                1 + s.vibrato_depth * np.sin(2 * np.pi * s.vibrato_hz * t + rng.uniform(0, 6.3))
            )
        freq = np.minimum(freq, nyquist_guard)
        if s.kind == "whistle":
            amplitudes = s.rolloff ** np.arange(s.harmonics)
            audio = _partials(freq, sr, amplitudes, rng.uniform(0, 6.3)) * _envelope(n, 0.12, 0.2)
        else:
            # a source rich in partials shaped by resonances that move with formant_shift
            # a formant source's partials far above its highest resonance add nothing audible
            top = min(nyquist_guard, 1.6 * max(s.formants) * max(1.0, s.formant_shift) * pitch)
            n_partials = s.harmonics if s.kind == "stack" else max(1, int(top / freq.min()))
            shift = np.linspace(1.0, s.formant_shift, n)
            k = np.arange(1, n_partials + 1)[:, None]
            partial_freq = k * freq[None, :]
            shaping = np.zeros_like(partial_freq)
            for centre in s.formants:
                shaping += _resonance(partial_freq, centre * pitch * shift[None, :], 0.12 * centre)
            source = (s.rolloff ** (k - 1)) if s.kind == "stack" else 1.0 / k
            attack, release = (0.08, 0.25) if s.kind == "stack" else (0.04, 0.3)
            audio = _partials(freq, sr, source * shaping, rng.uniform(0, 6.3)) * _envelope(
                n, attack, release
            )
    elif s.kind in ("noisy", "buzz"):
        centre = _contour(s.contour, start, end, n)
        half_width = 0.5 * s.bandwidth * np.mean(centre)
        # a band of noise around 0 Hz, shifted to the moving centre
        base = _band_noise(n, sr, 0.0, half_width, rng)
        audio = base * np.cos(2 * np.pi * np.cumsum(np.minimum(centre, nyquist_guard)) / sr)
        if s.kind == "buzz":
            t = np.arange(n) / sr
            audio *= 0.55 + 0.45 * np.sin(2 * np.pi * s.rate_hz * t)
            audio *= _envelope(n, 0.1, 0.2)
        else:  # sharp attack, exponential decay
            audio *= np.exp(-np.arange(n) / (0.35 * n)) * _envelope(n, 0.03, 0.15)
    elif s.kind == "trill":
        element_n = max(16, int(sr / max(s.rate_hz, 1.0) * 0.6))
        gap_n = max(1, int(sr / max(s.rate_hz, 1.0)) - element_n)
        element = _partials(
            _contour("glide", start, end, element_n), sr, s.rolloff ** np.arange(s.harmonics), 0.0
        ) * _envelope(element_n, 0.25, 0.35)
        count = max(1, n // (element_n + gap_n))
        audio = np.concatenate([np.concatenate([element, np.zeros(gap_n)])] * count)
    elif s.kind == "pulses":
        click_n = max(8, int(0.004 * sr))
        period = max(click_n + 1, int(sr / max(s.rate_hz, 1.0)))
        carrier = _band_noise(
            n, sr, start * (1 - s.bandwidth / 2), start * (1 + s.bandwidth / 2), rng
        )
        gate = (np.arange(n) % period) < click_n
        audio = carrier * gate * _envelope(n, 0.05, 0.1)
    else:
        raise ValueError(f"unknown syllable kind {s.kind!r}")
    if s.reverse:
        audio = audio[::-1]
    return audio / (np.max(np.abs(audio)) + 1e-12)


# ---------------------------------------------------------------------------------------------
# backgrounds and distractors

BACKGROUND_KINDS = ("wind", "rain", "stream", "insects", "hum", "hiss")


def _shaped_noise(n: int, sr: int, rng: np.random.Generator, slope: float) -> np.ndarray:
    """Unit-RMS noise with power falling as f^-slope (1 = pink, 2 = brown)."""
    return _spectrally_shaped(n, sr, rng, lambda freqs: np.maximum(freqs, 30.0) ** (-slope / 2))


def _slow_modulation(n: int, sr: int, rng: np.random.Generator, rate_hz: float, depth: float):
    """A smooth random gain around 1 (gusts, swells)."""
    points = max(4, int(n / sr * rate_hz) + 3)
    knots = rng.uniform(1 - depth, 1 + depth, points)
    return np.interp(np.linspace(0, points - 1, n), np.arange(points), knots)


def render_background(kind: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of one background texture, unit RMS."""
    t = np.arange(n) / sr
    if kind == "wind":
        audio = _shaped_noise(n, sr, rng, rng.uniform(1.3, 2.0))
        audio *= _slow_modulation(n, sr, rng, rng.uniform(0.2, 0.8), 0.7)
    elif kind == "rain":
        audio = 0.5 * _shaped_noise(n, sr, rng, 0.8)
        drops = np.zeros(n)
        count = int(n / sr * rng.uniform(20, 120))
        drops[rng.integers(0, n, count)] = rng.exponential(1.0, count) * rng.choice([-1, 1], count)
        decay = np.exp(-np.arange(int(0.004 * sr)) / (0.0008 * sr))
        audio += 6 * np.convolve(drops, decay)[:n]
    elif kind == "stream":
        audio = _band_noise(n, sr, rng.uniform(100, 300), rng.uniform(1500, 4000), rng)
        audio *= _slow_modulation(n, sr, rng, rng.uniform(5, 15), 0.3)
    elif kind == "insects":  # a chorus: a steady high band throbbing at its wing/stridulation rate
        centre = rng.uniform(3500, min(9000, 0.4 * sr))
        audio = _band_noise(n, sr, centre * 0.85, centre * 1.15, rng)
        audio *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(15, 60) * t)
        audio *= _slow_modulation(n, sr, rng, 0.1, 0.4)
    elif kind == "hum":  # distant engine or generator: low harmonics plus rumble
        f0 = rng.uniform(40, 130) * _slow_modulation(n, sr, rng, 0.05, 0.05)
        audio = _partials(f0, sr, 0.7 ** np.arange(8), 0.0)
        audio = audio / (np.std(audio) + 1e-12) + 0.7 * _shaped_noise(n, sr, rng, 2.0)
    elif kind == "hiss":
        audio = _shaped_noise(n, sr, rng, rng.uniform(0.0, 0.5))
    else:
        raise ValueError(f"unknown background {kind!r}")
    return audio / (np.std(audio) + 1e-12)


def render_background_mix(
    n: int, sr: int, rng: np.random.Generator, kinds: tuple[str, ...] = BACKGROUND_KINDS
) -> np.ndarray:
    """One to three textures at random relative levels, plus a little hiss; unit RMS."""
    chosen = rng.choice(kinds, size=int(rng.integers(1, 4)), replace=False)
    audio = np.zeros(n)
    for kind in chosen:
        audio += 10 ** (-rng.uniform(0, 12) / 20) * render_background(str(kind), n, sr, rng)
    audio += 0.05 * rng.standard_normal(n)
    return audio / (np.std(audio) + 1e-12)


def render_speech(duration_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Vowel-like babble, as when a recordist speaks a note into the recording; peak 1."""
    syllables = []
    f0 = rng.uniform(95, 220)
    while sum(map(len, syllables)) < duration_s * sr:
        vowel = (rng.uniform(300, 850), rng.uniform(900, 2300), rng.uniform(2400, 3200))
        syllable = Syllable(
            kind="formant",
            duration_s=rng.uniform(0.12, 0.3),
            f_start=f0 * rng.uniform(0.9, 1.15),
            f_end=f0 * rng.uniform(0.85, 1.1),
            formants=vowel,
            formant_shift=rng.uniform(0.8, 1.25),
        )
        syllables.append(render_syllable(syllable, sr, rng) * rng.uniform(0.5, 1.0))
        if rng.random() < 0.25:
            syllables.append(np.zeros(int(rng.uniform(0.05, 0.4) * sr)))
    return np.concatenate(syllables)[: int(duration_s * sr)]


def render_transient(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A handling thump, a knock or a twig snap; peak 1."""
    n = int(rng.uniform(0.02, 0.12) * sr)
    if rng.random() < 0.5:  # thump: low and dull
        audio = _band_noise(n, sr, 20, rng.uniform(200, 800), rng)
    else:  # snap or knock: broadband
        audio = _band_noise(n, sr, rng.uniform(300, 1500), 0.45 * sr, rng)
    audio *= np.exp(-np.arange(n) / (0.2 * n))
    return audio / (np.max(np.abs(audio)) + 1e-12)


# ---------------------------------------------------------------------------------------------
# propagation: what distance does to a call on its way to a passive recorder


def propagate(
    audio: np.ndarray, sr: int, distance_m: float, rng: np.random.Generator, reverb_s: float
) -> np.ndarray:
    """`audio` as heard `distance_m` away in vegetation: high frequencies absorbed (more with
    distance), then reverberation whose share grows with distance. Level is left to the caller
    (spreading loss); the result is longer than `audio` by the reverberation tail."""
    tail = int(reverb_s * sr)
    size = scipy.fft.next_fast_len(len(audio) + tail, real=True)
    freqs_khz = scipy.fft.rfftfreq(size, 1 / sr) / 1000
    # excess attenuation in dB: air absorption plus foliage scattering, rising with frequency
    loss_db = 0.012 * distance_m * freqs_khz**1.4
    spectrum = scipy.fft.rfft(audio, size) * 10 ** (-loss_db / 20)
    t = np.arange(tail) / sr
    response = rng.standard_normal(tail) * np.exp(-6.9 * t / reverb_s)
    response = scipy.signal.lfilter([0.3], [1, -0.7], response)  # walls of leaves damp the highs
    response /= np.sqrt(np.sum(response**2)) + 1e-12
    wet_share = min(0.85, 0.15 + distance_m / 80)
    wet = scipy.fft.irfft(spectrum * scipy.fft.rfft(response, size), size)
    dry = scipy.fft.irfft(spectrum, size)
    out = (1 - wet_share) * dry + wet_share * wet * np.std(dry) / (np.std(wet) + 1e-12)
    return out[: len(audio) + tail]
