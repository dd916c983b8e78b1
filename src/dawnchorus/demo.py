"""Synthetic demo data in the exact BirdCLEF 2025 layout, generated offline and deterministically.

Species differ the way birds do: call shape (frequency sweeps, two-note whistles, trills, harmonic
stacks, buzzes, frog pulse trains, insect stridulation), pitch band and rhythm. Bird species come in
look-alike pairs that share call type, band and timing and differ only in the direction of their
frequency contour (or in their pulse rhythm), so a clip's average spectrum barely tells the twins
apart while the time-frequency pattern does. Recordings carry coloured background noise at varied
SNR, unlabelled distractor calls, durations from under 5 s to several minutes, several sample rates,
some stereo, and secondary species whose calls really are in the clip.

Every recording is rendered from its own seed, so the output does not depend on the worker count.
(OGG files differ byte-wise between runs only in the random Ogg stream serial number libsndfile
picks; decoded audio and every CSV are identical.)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.fft
import soundfile as sf

BIRD_CALL_TYPES = ("sweep", "two_note", "trill", "stack", "buzz")
SAMPLE_RATES = (32000, 44100, 48000, 22050, 16000)
SAMPLE_RATE_WEIGHTS = (0.60, 0.15, 0.13, 0.08, 0.04)
STEREO_FRACTION = 0.15
SOUNDSCAPE_SECONDS = 60
SOUNDSCAPE_RATE = 32000
WINDOW_SECONDS = 5
GROUND_TRUTH_CSV = "test_soundscapes_ground_truth.csv"
TRAIN_COLUMNS = (
    "primary_label",
    "secondary_labels",
    "type",
    "filename",
    "collection",
    "rating",
    "url",
    "latitude",
    "longitude",
    "scientific_name",
    "common_name",
    "author",
    "license",
)
TAXONOMY_COLUMNS = (
    "primary_label",
    "inat_taxon_id",
    "scientific_name",
    "common_name",
    "class_name",
)

_GENERA = (
    "Aurivox",
    "Silvicanta",
    "Noctiphona",
    "Ripavolans",
    "Fulgorix",
    "Canorella",
    "Brumalis",
    "Vesperula",
    "Cirrhopica",
    "Lucernix",
    "Tinnulus",
    "Zephyrida",
)
_EPITHETS = (
    "matutina",
    "crepuscula",
    "sonora",
    "fluvialis",
    "argentea",
    "minor",
    "rubicunda",
    "obscura",
    "tremula",
    "alticola",
    "vocifera",
    "silvestris",
    "andina",
    "palustris",
)
_COLOURS = (
    "Amber",
    "Slate",
    "Rufous",
    "Olive",
    "Ivory",
    "Cobalt",
    "Dusky",
    "Golden",
    "Ashy",
    "Crimson",
    "Buff",
    "Sooty",
    "Pearl",
    "Cinnamon",
)
_KINDS = (
    "Warbler",
    "Tanager",
    "Wren",
    "Flycatcher",
    "Thrush",
    "Sparrow",
    "Antbird",
    "Vireo",
    "Finch",
    "Seedeater",
    "Woodcreeper",
    "Manakin",
    "Euphonia",
    "Pewee",
)
_AUTHORS = (
    "A. Moreno",
    "B. Okafor",
    "C. Lindqvist",
    "D. Alvarez",
    "E. Nakamura",
    "F. Duarte",
    "G. Petrov",
    "H. Osei",
    "I. Castillo",
    "J. Weber",
)
_SITES = ("H02", "H04", "S08", "S13", "S19", "S22")


@dataclass(frozen=True)
class Voice:
    """How one synthetic species calls."""

    label: str
    scientific_name: str
    common_name: str
    class_name: str
    inat_taxon_id: int
    call_type: str
    f_low: float  # Hz
    f_high: float  # Hz
    note_s: float  # length of one note / element
    notes: int  # notes per call
    note_gap_s: float  # silence between notes of a call
    call_gap_s: float  # mean silence between calls
    rising: bool  # contour direction (the difference between look-alike twins)
    harmonics: int
    modulation_hz: float  # buzz amplitude modulation / stridulation pulse rate
    twin: str = ""  # label of the look-alike species, if any


# ---------------------------------------------------------------------------------------------
# species


def make_voices(n_species: int, seed: int) -> list[Voice]:
    """`n_species` voices: look-alike bird pairs, plus a frog and an insect when n >= 6."""
    if n_species < 2:
        raise ValueError("the demo needs at least 2 species")
    rng = np.random.default_rng([seed, 1])
    n_other = 2 if n_species >= 6 else 0
    n_birds = n_species - n_other
    names = _unique_names(n_species, rng)
    voices: list[Voice] = []
    taxon_ids = rng.choice(np.arange(10_000, 999_999), size=n_species, replace=False)
    for start in range(0, n_birds, 2):
        call_type = BIRD_CALL_TYPES[(start // 2) % len(BIRD_CALL_TYPES)]
        template = _bird_template(call_type, rng)
        for offset, rising in ((0, True), (1, False)):
            index = start + offset
            if index >= n_birds:
                break
            scientific, common, label = names[index]
            voices.append(
                replace(
                    template,
                    label=label,
                    scientific_name=scientific,
                    common_name=common,
                    inat_taxon_id=int(taxon_ids[index]),
                    rising=rising,
                )
            )
    if n_other:
        frog, insect = n_birds, n_birds + 1
        voices.append(
            Voice(
                label=str(taxon_ids[frog]),
                scientific_name=f"Pristimantis {names[frog][0].split()[1]}",
                common_name=f"{names[frog][1].split()[0]} Rain Frog",
                class_name="Amphibia",
                inat_taxon_id=int(taxon_ids[frog]),
                call_type="pulse_train",
                f_low=float(rng.uniform(450, 700)),
                f_high=float(rng.uniform(1400, 1900)),
                note_s=0.03,
                notes=int(rng.integers(6, 10)),
                note_gap_s=0.05,
                call_gap_s=1.4,
                rising=True,
                harmonics=3,
                modulation_hz=0.0,
            )
        )
        voices.append(
            Voice(
                label=str(taxon_ids[insect]),
                scientific_name=f"Copiphora {names[insect][0].split()[1]}",
                common_name=f"{names[insect][1].split()[0]} Katydid",
                class_name="Insecta",
                inat_taxon_id=int(taxon_ids[insect]),
                call_type="stridulation",
                f_low=float(rng.uniform(6500, 7500)),
                f_high=float(rng.uniform(8500, 9500)),
                note_s=2.5,
                notes=1,
                note_gap_s=0.0,
                call_gap_s=1.2,
                rising=True,
                harmonics=1,
                modulation_hz=float(rng.uniform(25, 40)),
            )
        )
    by_label = {voice.label: voice for voice in voices}
    paired = []
    for position, voice in enumerate(voices):
        if voice.class_name != "Aves":
            paired.append(voice)
            continue
        mate = position + 1 if position % 2 == 0 else position - 1
        twin = voices[mate].label if mate < n_birds and voices[mate].label in by_label else ""
        paired.append(replace(voice, twin=twin))
    return paired


def _unique_names(n: int, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    names: list[tuple[str, str, str]] = []
    labels: set[str] = set()
    scientific_seen, common_seen = set(), set()
    while len(names) < n:
        genus, epithet = rng.choice(_GENERA), rng.choice(_EPITHETS)
        colour, kind = rng.choice(_COLOURS), rng.choice(_KINDS)
        if f"{genus} {epithet}" in scientific_seen or f"{colour} {kind}" in common_seen:
            continue
        scientific_seen.add(f"{genus} {epithet}")
        common_seen.add(f"{colour} {kind}")
        stem = (colour[:3] + kind[:3]).lower()
        label = next(f"{stem}{i}" for i in range(1, 100) if f"{stem}{i}" not in labels)
        labels.add(label)
        names.append((f"{genus} {epithet}", f"{colour} {kind}", label))
    return names


def _bird_template(call_type: str, rng: np.random.Generator) -> Voice:
    centre = float(np.exp(rng.uniform(np.log(2000), np.log(7000))))
    ratio = float(rng.uniform(1.4, 2.0))
    f_low, f_high = centre / math.sqrt(ratio), centre * math.sqrt(ratio)
    common = dict(
        label="",
        scientific_name="",
        common_name="",
        class_name="Aves",
        inat_taxon_id=0,
        call_type=call_type,
        f_low=f_low,
        f_high=f_high,
        rising=True,
        modulation_hz=0.0,
        harmonics=int(rng.integers(1, 3)),
    )
    if call_type == "sweep":
        return Voice(
            **common,
            note_s=float(rng.uniform(0.25, 0.45)),
            notes=1,
            note_gap_s=0.0,
            call_gap_s=float(rng.uniform(0.5, 1.2)),
        )
    if call_type == "two_note":
        return Voice(
            **common,
            note_s=float(rng.uniform(0.18, 0.3)),
            notes=2,
            note_gap_s=float(rng.uniform(0.05, 0.12)),
            call_gap_s=float(rng.uniform(0.6, 1.3)),
        )
    if call_type == "trill":
        return Voice(
            **common,
            note_s=float(rng.uniform(0.035, 0.06)),
            notes=int(rng.integers(8, 14)),
            note_gap_s=float(rng.uniform(0.02, 0.04)),
            call_gap_s=float(rng.uniform(0.6, 1.3)),
        )
    if call_type == "stack":
        f0 = float(rng.uniform(500, 1100))
        common.update(f_low=f0, f_high=f0 * 1.3, harmonics=int(rng.integers(4, 7)))
        return Voice(
            **common,
            note_s=float(rng.uniform(0.3, 0.5)),
            notes=1,
            note_gap_s=0.0,
            call_gap_s=float(rng.uniform(0.6, 1.2)),
        )
    # buzz: a noise band swept through the species' band
    common.update(modulation_hz=float(rng.uniform(60, 110)))
    return Voice(
        **common,
        note_s=float(rng.uniform(0.5, 0.8)),
        notes=1,
        note_gap_s=0.0,
        call_gap_s=float(rng.uniform(0.6, 1.2)),
    )


# ---------------------------------------------------------------------------------------------
# synthesis


def _envelope(n: int, edge_fraction: float = 0.15) -> np.ndarray:
    edge = max(1, int(n * edge_fraction))
    env = np.ones(n, dtype=np.float64)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, edge))
    env[:edge] = ramp
    env[n - edge :] = ramp[::-1]
    return env


def _tone(freq: np.ndarray, sr: int, harmonics: int, decay: float = 0.35) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(freq) / sr
    out = np.zeros(len(freq))
    for h in range(1, harmonics + 1):
        audible = h * freq < 0.45 * sr
        out += np.where(audible, np.sin(h * phase), 0.0) * decay ** (h - 1)
    return out


def _glide(start: float, end: float, n: int) -> np.ndarray:
    """Exponential frequency glide (equal steps in pitch)."""
    return np.exp(np.linspace(np.log(start), np.log(end), n))


def _band_noise(n: int, sr: int, f_low: float, f_high: float, rng: np.random.Generator):
    size = scipy.fft.next_fast_len(n, real=True)  # awkward lengths make the FFT 10x slower
    spectrum = scipy.fft.rfft(rng.standard_normal(size))
    freqs = scipy.fft.rfftfreq(size, 1 / sr)
    spectrum[(freqs < f_low) | (freqs > f_high)] = 0
    noise = scipy.fft.irfft(spectrum, size)[:n]
    return noise / (np.std(noise) + 1e-12)


def render_call(
    voice: Voice, sr: int, rng: np.random.Generator, pitch: float = 1.0, tempo: float = 1.0
) -> np.ndarray:
    """One call of `voice` at sample rate `sr` (peak about 1)."""
    lo, hi = voice.f_low * pitch, min(voice.f_high * pitch, 0.45 * sr)
    note_n = max(8, int(voice.note_s * tempo * sr))
    gap = np.zeros(int(voice.note_gap_s * tempo * sr))
    kind = voice.call_type
    if kind == "sweep":
        freq = _glide(lo, hi, note_n) if voice.rising else _glide(hi, lo, note_n)
        parts = [_tone(freq, sr, voice.harmonics) * _envelope(note_n)]
    elif kind == "two_note":
        first, second = (lo, hi) if voice.rising else (hi, lo)
        parts = [
            _tone(_glide(first, first * 0.97, note_n), sr, voice.harmonics) * _envelope(note_n),
            gap,
            _tone(_glide(second, second * 0.97, note_n), sr, voice.harmonics) * _envelope(note_n),
        ]
    elif kind == "trill":
        start, end = (lo, hi) if voice.rising else (hi, lo)
        note = _tone(_glide(start, end, note_n), sr, voice.harmonics) * _envelope(note_n, 0.3)
        parts = [part for _ in range(voice.notes) for part in (note, gap)]
    elif kind == "stack":
        f0 = _glide(lo, hi, note_n) if voice.rising else _glide(hi, lo, note_n)
        parts = [_tone(f0, sr, voice.harmonics, decay=0.8) * _envelope(note_n)]
    elif kind == "buzz":
        # a narrow noise band whose centre slides through the species' band, pulsed at a rate
        width = 0.35 * (hi - lo)
        centre = np.linspace(lo + width / 2, hi - width / 2, note_n)
        centre = centre if voice.rising else centre[::-1]
        carrier = np.cos(2 * np.pi * np.cumsum(centre) / sr)
        t = np.arange(note_n) / sr
        am = 0.6 + 0.4 * np.sin(2 * np.pi * voice.modulation_hz * t)
        noise = _band_noise(note_n, sr, 0.0, width / 2, rng)
        parts = [noise * carrier * am * _envelope(note_n)]
    elif kind == "pulse_train":
        pulse = _tone(np.full(note_n, lo), sr, voice.harmonics, decay=0.7) * _envelope(note_n, 0.4)
        parts = [part for _ in range(voice.notes) for part in (pulse, gap)]
    elif kind == "stridulation":
        t = np.arange(note_n) / sr
        carrier = _band_noise(note_n, sr, lo, hi, rng)
        pulses = (np.sin(2 * np.pi * voice.modulation_hz * t) > 0.6).astype(float)
        parts = [0.5 * carrier * pulses * _envelope(note_n, 0.05)]
    else:
        raise ValueError(f"unknown call type {kind}")
    call = np.concatenate(parts)
    return call / (np.max(np.abs(call)) + 1e-12)


def _coloured_noise(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Pink-to-brown background (wind, stream, distant chorus), unit RMS."""
    size = scipy.fft.next_fast_len(n, real=True)
    spectrum = scipy.fft.rfft(rng.standard_normal(size))
    freqs = scipy.fft.rfftfreq(size, 1 / sr)
    slope = rng.uniform(0.5, 1.0)  # 0.5 = pink, 1.0 = brown
    shaped = spectrum / np.maximum(freqs, 20.0) ** slope
    noise = scipy.fft.irfft(shaped, size)[:n]
    noise += rng.uniform(0.02, 0.15) * rng.standard_normal(n) * np.std(noise)  # hiss
    return noise / (np.std(noise) + 1e-12)


def _place_calls(
    track: np.ndarray,
    voice: Voice,
    sr: int,
    rng: np.random.Generator,
    density: float,
    level: float,
    pitch: float,
    tempo: float,
    span: tuple[float, float] | None = None,
    at_least_one: bool = True,
) -> list[tuple[float, float]]:
    """Add calls of `voice` to `track`; returns their (start, end) times in seconds."""
    start_s, end_s = span or (0.0, len(track) / sr)
    times: list[tuple[float, float]] = []
    t = start_s + rng.uniform(0, min(1.0, voice.call_gap_s))
    while True:
        call = render_call(voice, sr, rng, pitch * rng.normal(1, 0.01), tempo)
        begin = int(t * sr)
        if begin + len(call) > int(end_s * sr):
            if times or not at_least_one:
                break
            begin = max(int(start_s * sr), int(end_s * sr) - len(call))  # squeeze one call in
            call = call[: int(end_s * sr) - begin]
        track[begin : begin + len(call)] += level * rng.uniform(0.7, 1.0) * call
        times.append((begin / sr, (begin + len(call)) / sr))
        t = (begin + len(call)) / sr + voice.call_gap_s * tempo / density * rng.exponential(1.0)
    return times


def _distractor(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """An unlabelled, unrelated chirp somewhere in the band (other birds exist)."""
    voice = _bird_template(str(rng.choice(BIRD_CALL_TYPES)), rng)
    voice = replace(
        voice,
        rising=bool(rng.integers(0, 2)),
        f_low=voice.f_low * rng.uniform(0.7, 1.3),
        f_high=voice.f_high * rng.uniform(0.7, 1.3),
    )
    track = np.zeros(n)
    _place_calls(track, voice, sr, rng, density=0.3, level=1.0, pitch=1.0, tempo=1.0)
    return track


@dataclass(frozen=True)
class RecordingSpec:
    """Everything needed to render one training recording, decided up front from the seed."""

    path: str
    primary: str
    secondary: tuple[str, ...]
    duration_s: float
    sample_rate: int
    channels: int
    seed: tuple[int, ...]


def render_recording(
    spec: RecordingSpec, voices: dict[str, Voice]
) -> tuple[np.ndarray, dict[str, list[tuple[float, float]]]]:
    """Audio for `spec`, shape (frames, channels), float32, peak below full scale, and the
    (start, end) seconds of every call of each labelled species."""
    rng = np.random.default_rng(list(spec.seed))
    sr, n = spec.sample_rate, int(spec.duration_s * spec.sample_rate)
    pitch, tempo = rng.normal(1.0, 0.03), rng.normal(1.0, 0.06)
    calls = np.zeros(n)
    events = {
        spec.primary: _place_calls(
            calls, voices[spec.primary], sr, rng, density=1.0, level=1.0, pitch=pitch, tempo=tempo
        )
    }
    for label in spec.secondary:
        events[label] = _place_calls(
            calls,
            voices[label],
            sr,
            rng,
            density=0.8,
            level=10 ** (-rng.uniform(2, 8) / 20),
            pitch=rng.normal(1.0, 0.03),
            tempo=rng.normal(1.0, 0.06),
        )
    if rng.random() < 0.3:
        calls += 10 ** (-rng.uniform(6, 14) / 20) * _distractor(n, sr, rng)
    snr_db = rng.uniform(0, 20)
    active_rms = np.sqrt(np.mean(calls[np.abs(calls) > 1e-3] ** 2)) if np.any(calls) else 1.0
    noise_rms = active_rms / 10 ** (snr_db / 20)
    channels = [calls + noise_rms * _coloured_noise(n, sr, rng)]
    if spec.channels == 2:
        delay = int(rng.uniform(0, 0.002) * sr)
        shifted = np.concatenate([np.zeros(delay), calls[: n - delay]])
        channels.append(rng.uniform(0.6, 1.0) * shifted + noise_rms * _coloured_noise(n, sr, rng))
    audio = np.stack(channels, axis=1)
    audio *= 10 ** (-rng.uniform(1, 12) / 20) / (np.max(np.abs(audio)) + 1e-12)
    return audio.astype(np.float32), events


def write_ogg(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """OGG/Vorbis in one-second blocks: libsndfile can crash encoding a long signal in one call."""
    audio = audio.reshape(len(audio), -1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(
        str(path), "w", sample_rate, audio.shape[1], format="OGG", subtype="VORBIS"
    ) as handle:
        for start in range(0, len(audio), sample_rate):
            handle.write(audio[start : start + sample_rate])


def _render_and_write(job: tuple[RecordingSpec, dict[str, Voice], str]) -> None:
    spec, voices, root = job
    audio, _ = render_recording(spec, voices)
    write_ogg(Path(root) / spec.path, audio, spec.sample_rate)


# ---------------------------------------------------------------------------------------------
# soundscapes


def render_soundscape(
    voices: Sequence[Voice], seed: tuple[int, ...]
) -> tuple[np.ndarray, dict[str, list[tuple[float, float]]]]:
    """A one-minute 32 kHz mono soundscape and the (start, end) times of each species' calls."""
    rng = np.random.default_rng(list(seed))
    sr, n = SOUNDSCAPE_RATE, SOUNDSCAPE_SECONDS * SOUNDSCAPE_RATE
    calls = np.zeros(n)
    n_present = int(rng.integers(2, min(5, len(voices)) + 1))
    present = rng.choice(len(voices), size=n_present, replace=False)
    events: dict[str, list[tuple[float, float]]] = {}
    for index in sorted(present):
        voice = voices[index]
        bout_start = rng.uniform(0, SOUNDSCAPE_SECONDS - 8)
        bout_end = min(SOUNDSCAPE_SECONDS, bout_start + rng.uniform(8, 35))
        events[voice.label] = _place_calls(
            calls,
            voice,
            sr,
            rng,
            density=0.7,
            level=10 ** (-rng.uniform(0, 9) / 20),
            pitch=rng.normal(1.0, 0.03),
            tempo=rng.normal(1.0, 0.06),
            span=(bout_start, bout_end),
        )
    calls += 10 ** (-rng.uniform(6, 12) / 20) * _distractor(n, sr, rng)
    noise_rms = np.sqrt(np.mean(calls[np.abs(calls) > 1e-3] ** 2)) / 10 ** (rng.uniform(0, 15) / 20)
    audio = calls + noise_rms * _coloured_noise(n, sr, rng)
    audio *= 10 ** (-rng.uniform(2, 8) / 20) / (np.max(np.abs(audio)) + 1e-12)
    return audio.astype(np.float32), events


def window_labels(
    events: dict[str, list[tuple[float, float]]],
    classes: Sequence[str],
    duration_s: int = SOUNDSCAPE_SECONDS,
    window_s: int = WINDOW_SECONDS,
) -> np.ndarray:
    """(n_windows, n_classes) 0/1: a species is present in a window that holds at least half of
    one of its calls, or 0.25 s of it for calls longer than 0.5 s."""
    n_windows = duration_s // window_s
    labels = np.zeros((n_windows, len(classes)), dtype=np.int8)
    column = {label: i for i, label in enumerate(classes)}
    for label, times in events.items():
        for start, end in times:
            needed = min(0.5 * (end - start), 0.25)
            for w in range(n_windows):
                overlap = min(end, (w + 1) * window_s) - max(start, w * window_s)
                if overlap >= needed and overlap > 0:
                    labels[w, column[label]] = 1
    return labels


def _soundscape_job(job: tuple[Path, Sequence[Voice], tuple[int, ...]]):
    path, voices, seed = job
    audio, events = render_soundscape(voices, seed)
    write_ogg(path, audio, SOUNDSCAPE_RATE)
    return events


# ---------------------------------------------------------------------------------------------
# the data set


def _draw_duration(rng: np.random.Generator) -> float:
    u = rng.random()
    if u < 0.15:
        return float(rng.uniform(1.5, 4.9))
    if u < 0.85:
        return float(rng.uniform(5, 20))
    if u < 0.98:
        return float(rng.uniform(20, 60))
    return float(rng.uniform(90, 200))


def _draw_sample_rate(rng: np.random.Generator, highest_hz: float) -> int:
    rates = [
        (r, w)
        for r, w in zip(SAMPLE_RATES, SAMPLE_RATE_WEIGHTS, strict=True)
        if r / 2 > 1.15 * highest_hz
    ]
    weights = np.array([w for _, w in rates])
    return int(rates[rng.choice(len(rates), p=weights / weights.sum())][0])


def _recording_counts(n_species: int, per_species: int, rng: np.random.Generator) -> list[int]:
    """Imbalanced like real data: from 1.5x to 0.5x the mean, at least 3 per species."""
    factors = np.linspace(1.5, 0.5, n_species)[rng.permutation(n_species)]
    return [max(3, round(per_species * f)) for f in factors]


def _metadata_row(
    voice: Voice, spec: RecordingSpec, rng: np.random.Generator, file_id: str, collection: str
) -> dict:
    url = {
        "XC": f"https://xeno-canto.org/{file_id[2:]}",
        "iNat": f"https://www.inaturalist.org/observations/{file_id[4:]}",
        "CSA": "",
    }[collection]
    return {
        "primary_label": voice.label,
        "secondary_labels": repr(list(spec.secondary) or [""]),
        "type": repr([str(rng.choice(["call", "song", "flight call", "alarm call"]))]),
        "filename": spec.path,
        "collection": collection,
        "rating": float(rng.choice(np.arange(0, 5.5, 0.5))) if collection == "XC" else 0.0,
        "url": url,
        "latitude": round(float(rng.normal(6.76, 0.3)), 4),
        "longitude": round(float(rng.normal(-74.22, 0.3)), 4),
        "scientific_name": voice.scientific_name,
        "common_name": voice.common_name,
        "author": str(rng.choice(_AUTHORS)),
        "license": "cc-by-nc-sa 4.0",
    }


def plan_recordings(
    voices: Sequence[Voice], per_species: int, seed: int
) -> tuple[list[RecordingSpec], list[dict]]:
    """Specs and train.csv rows of every training recording (no audio rendered yet)."""
    rng = np.random.default_rng([seed, 2])
    counts = _recording_counts(len(voices), per_species, rng)
    specs, rows, used_ids = [], [], set()
    for species_index, (voice, count) in enumerate(zip(voices, counts, strict=True)):
        for recording_index in range(count):
            secondary: list[str] = []
            draw = rng.random()
            n_secondary = 2 if draw < 0.07 else 1 if draw < 0.30 else 0
            others = [v.label for v in voices if v.label != voice.label]
            if n_secondary:
                secondary = [str(x) for x in rng.choice(others, size=n_secondary, replace=False)]
            collection = str(rng.choice(["XC", "iNat", "CSA"], p=[0.7, 0.25, 0.05]))
            while True:
                number = int(rng.integers(100_000, 999_999))
                file_id = {
                    "XC": f"XC{number}",
                    "iNat": f"iNat{number}",
                    "CSA": f"CSA{number % 100_000:05d}",
                }[collection]
                if file_id not in used_ids:
                    used_ids.add(file_id)
                    break
            highest = max(v.f_high * 1.3 for v in voices if v.label in [voice.label, *secondary])
            spec = RecordingSpec(
                path=f"{voice.label}/{file_id}.ogg",
                primary=voice.label,
                secondary=tuple(secondary),
                duration_s=round(_draw_duration(rng), 3),
                sample_rate=_draw_sample_rate(rng, highest),
                channels=2 if rng.random() < STEREO_FRACTION else 1,
                seed=(seed, 3, species_index, recording_index),
            )
            specs.append(spec)
            rows.append(_metadata_row(voice, spec, rng, file_id, collection))
    return specs, rows


def generate_demo_data(
    out_dir: str | Path,
    n_species: int = 12,
    per_species: int = 40,
    seed: int = 0,
    n_test_soundscapes: int = 8,
    n_train_soundscapes: int = 2,
    workers: int | None = None,
) -> dict:
    """Write a complete BirdCLEF-2025-layout data set to `out_dir`; returns a short summary."""
    out_dir = Path(out_dir)
    voices = make_voices(n_species, seed)
    by_label = {voice.label: voice for voice in voices}
    specs, rows = plan_recordings(voices, per_species, seed)
    workers = workers or os.cpu_count() or 1
    out_dir.mkdir(parents=True, exist_ok=True)

    soundscape_rng = np.random.default_rng([seed, 4])
    soundscape_names = []
    for _ in range(n_test_soundscapes + n_train_soundscapes):
        day = int(soundscape_rng.integers(1, 29))
        minute = int(soundscape_rng.integers(0, 6)) * 10
        name = (
            f"{soundscape_rng.choice(_SITES)}_202304{day:02d}_"
            f"{int(soundscape_rng.integers(4, 9)):02d}{minute:02d}00"
        )
        while name in soundscape_names:
            name += "a"
        soundscape_names.append(name)
    test_names = sorted(soundscape_names[:n_test_soundscapes])
    train_names = sorted(soundscape_names[n_test_soundscapes:])
    soundscape_jobs = [
        (out_dir / "test_soundscapes" / f"{name}.ogg", voices, (seed, 5, i))
        for i, name in enumerate(test_names)
    ] + [
        (out_dir / "train_soundscapes" / f"{name}.ogg", voices, (seed, 6, i))
        for i, name in enumerate(train_names)
    ]
    (out_dir / "test_soundscapes").mkdir(exist_ok=True)
    (out_dir / "train_soundscapes").mkdir(exist_ok=True)

    recording_jobs = [(spec, by_label, str(out_dir / "train_audio")) for spec in specs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # longest first, so one several-minute recording does not finish last on its own
        order = sorted(range(len(recording_jobs)), key=lambda i: -specs[i].duration_s)
        list(pool.map(_render_and_write, [recording_jobs[i] for i in order], chunksize=1))
        events = list(pool.map(_soundscape_job, soundscape_jobs))

    classes = [voice.label for voice in voices]
    pd.DataFrame(rows, columns=list(TRAIN_COLUMNS)).to_csv(
        out_dir / "train.csv", index=False, lineterminator="\n"
    )
    taxonomy = pd.DataFrame([asdict(voice) for voice in voices]).rename(
        columns={"label": "primary_label"}
    )
    taxonomy[list(TAXONOMY_COLUMNS)].to_csv(
        out_dir / "taxonomy.csv", index=False, lineterminator="\n"
    )
    row_ids = [
        f"{name}_{end}"
        for name in test_names
        for end in range(WINDOW_SECONDS, SOUNDSCAPE_SECONDS + 1, WINDOW_SECONDS)
    ]
    sample = pd.DataFrame(1.0 / len(classes), index=range(len(row_ids)), columns=classes)
    sample.insert(0, "row_id", row_ids)
    sample.to_csv(out_dir / "sample_submission.csv", index=False, lineterminator="\n")
    truth_blocks = [window_labels(events[i], classes) for i in range(len(test_names))]
    truth = pd.DataFrame(
        np.concatenate(truth_blocks)
        if truth_blocks
        else np.zeros((0, len(classes)), dtype=np.int8),
        columns=classes,
    )
    truth.insert(0, "row_id", row_ids)
    truth.to_csv(out_dir / GROUND_TRUTH_CSV, index=False, lineterminator="\n")
    return {
        "species": len(voices),
        "recordings": len(specs),
        "audio_hours": round(sum(spec.duration_s for spec in specs) / 3600, 3),
        "test_soundscapes": len(test_names),
        "train_soundscapes": len(train_names),
    }
