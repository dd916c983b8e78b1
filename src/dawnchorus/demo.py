"""Synthetic demo data in the exact BirdCLEF 2025 layout, generated offline and deterministically.

The demo is built to be as hard as field data in the ways that decide whether a model learns:
- weak labels: a training recording is labelled with its species, but the species sings in only
  about 5-30 % of it, anywhere; the rest is background and unlabelled sounds (other species that
  are not in the taxonomy, a recordist's voice, handling noise);
- real structure: species sing songs (syllable sequences with varying repeats and tempo) built
  from harmonic stacks with vibrato and FM, whistles, noisy broadband syllables, buzzes, trills,
  formant-like croaks and insect pulse trains (see `sounds`), each individual at its own pitch
  and tempo;
- look-alikes: species come in groups of two or three that share their syllables' bands and
  families and differ only in structure (a syllable played backwards, another order, a faster
  rhythm), so a recording's average spectrum cannot tell them apart;
- a long tail: from `max_per_species` recordings for the commonest species down to
  `min_per_species` for the rarest, geometrically;
- backgrounds of wind, rain, streams, insect choruses, engines and hiss at 0-20 dB SNR;
- domain shift: test and train soundscapes are passive-recorder minutes in which several species
  call from a distance (quieter, high frequencies absorbed, reverberant) and overlap.
Recordings come at several sample rates, some in stereo, from under 5 s to a few minutes.

Every recording is rendered from its own seed, so the output does not depend on the worker count.
(OGG files differ byte-wise between runs only in the random Ogg stream serial number libsndfile
picks; decoded audio and every CSV are identical.)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from dawnchorus.sounds import (
    Syllable,
    propagate,
    render_background_mix,
    render_speech,
    render_syllable,
    render_transient,
)

# look-alike groups, in the order they are made: (syllable family, class, group size)
GROUP_FAMILIES = (
    ("whistle", "Aves", 3),
    ("formant", "Amphibia", 2),
    ("pulses", "Insecta", 2),
    ("trill", "Aves", 3),
    ("stack", "Aves", 2),
    ("noisy", "Aves", 2),
)
SAMPLE_RATES = (32000, 44100, 48000, 22050, 16000)
SAMPLE_RATE_WEIGHTS = (0.60, 0.15, 0.13, 0.08, 0.04)
STEREO_FRACTION = 0.15
SOUNDSCAPE_SECONDS = 60
SOUNDSCAPE_RATE = 32000
WINDOW_SECONDS = 5
GROUND_TRUTH_CSV = "test_soundscapes_ground_truth.csv"
# the labelled species sings in this share of a training recording (weak labels)
PRIMARY_COVERAGE = (0.05, 0.30)
N_DISTRACTOR_VOICES = 8
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
    """How one synthetic species sings: a repertoire of syllables and a song grammar."""

    label: str
    scientific_name: str
    common_name: str
    class_name: str
    inat_taxon_id: int
    syllables: tuple[Syllable, ...]
    # the song: (syllable index, fewest repeats, most repeats) in order
    phrase: tuple[tuple[int, int, int], ...]
    syllable_gap_s: float  # silence between syllables of a song
    song_gap_s: float  # mean silence between songs of a bout
    group: int  # look-alike group: members share syllable bands and families

    @property
    def highest_hz(self) -> float:
        return max(syllable.highest_hz for syllable in self.syllables)


# ---------------------------------------------------------------------------------------------
# species


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _group_repertoire(family: str, rng: np.random.Generator):
    """(syllables, phrase, syllable gap, song gap) shared by one look-alike group."""
    centre = _log_uniform(rng, 1800, 6500)
    ratio = float(rng.uniform(1.3, 1.9))
    low, high = centre / math.sqrt(ratio), centre * math.sqrt(ratio)
    gap = float(rng.uniform(0.05, 0.15))
    song_gap = float(rng.uniform(0.8, 2.5))
    if family == "whistle":
        syllables = (
            Syllable(
                "whistle",
                rng.uniform(0.15, 0.35),
                low,
                high,
                "glide",
                harmonics=int(rng.integers(1, 3)),
                rolloff=0.3,
            ),
            Syllable(
                "whistle",
                rng.uniform(0.25, 0.5),
                centre * 0.85,
                centre * 1.15,
                "arch",
                vibrato_hz=rng.uniform(8, 30),
                vibrato_depth=rng.uniform(0.02, 0.05),
                harmonics=2,
                rolloff=0.3,
            ),
        )
        phrase = ((0, 2, 4), (1, 1, 2))
    elif family == "trill":
        syllables = (
            Syllable(
                "trill",
                rng.uniform(0.6, 1.2),
                low,
                high,
                rate_hz=rng.uniform(12, 22),
                harmonics=int(rng.integers(1, 3)),
                rolloff=0.3,
            ),
            Syllable(
                "noisy",
                rng.uniform(0.04, 0.08),
                centre * 1.1,
                centre * 0.9,
                bandwidth=rng.uniform(0.6, 1.0),
            ),
        )
        phrase = ((1, 1, 3), (0, 1, 1))
    elif family == "stack":
        f0 = float(rng.uniform(350, 900))
        syllables = (
            Syllable(
                "stack",
                rng.uniform(0.2, 0.4),
                f0,
                f0 * rng.uniform(1.1, 1.3),
                "arch",
                vibrato_hz=rng.uniform(20, 40),
                vibrato_depth=0.03,
                harmonics=int(0.45 * 16000 / f0),
                rolloff=0.9,
                formants=(centre,),
            ),
            Syllable(
                "buzz",
                rng.uniform(0.3, 0.6),
                centre * 0.9,
                centre * 1.1,
                bandwidth=0.25,
                rate_hz=rng.uniform(60, 120),
            ),
        )
        phrase = ((0, 2, 3), (1, 1, 1))
    elif family == "noisy":
        syllables = (
            Syllable(
                "noisy", rng.uniform(0.03, 0.07), centre, centre, bandwidth=rng.uniform(0.8, 1.2)
            ),
            Syllable(
                "buzz",
                rng.uniform(0.3, 0.6),
                low,
                high,
                bandwidth=0.3,
                rate_hz=rng.uniform(50, 100),
            ),
        )
        phrase = ((0, 3, 6), (1, 1, 1))
    elif family == "formant":  # frogs: a pulsed low source through moving resonances
        f0 = float(rng.uniform(90, 250))
        formants = (rng.uniform(400, 800), rng.uniform(1000, 1800), rng.uniform(2200, 3000))
        syllables = (
            Syllable(
                "formant",
                rng.uniform(0.15, 0.35),
                f0,
                f0 * 0.9,
                formants=formants,
                formant_shift=rng.uniform(1.2, 1.4),
            ),
            Syllable(
                "formant",
                rng.uniform(0.05, 0.1),
                f0 * 1.1,
                f0,
                formants=formants,
                formant_shift=rng.uniform(0.8, 0.9),
            ),
        )
        phrase = ((0, 1, 2), (1, 3, 6))
        gap = float(rng.uniform(0.08, 0.2))
    elif family == "pulses":  # insects: high click trains
        band = float(rng.uniform(5000, 8500))
        rate = float(rng.uniform(40, 90))
        width = float(rng.uniform(0.15, 0.3))
        syllables = (
            Syllable("pulses", rng.uniform(0.4, 1.0), band, band, bandwidth=width, rate_hz=rate),
            Syllable(
                "pulses", rng.uniform(0.1, 0.2), band, band, bandwidth=width, rate_hz=rate * 0.6
            ),
        )
        phrase = ((0, 1, 1), (1, 2, 4))
        gap = float(rng.uniform(0.1, 0.2))
    else:
        raise ValueError(f"unknown family {family!r}")
    return syllables, phrase, gap, song_gap


def _member(member: int, syllables, phrase, gap: float):
    """The look-alike variant `member` of a group's repertoire: same bands, other structure."""
    if member == 0:
        return syllables, phrase, gap
    if member == 1:  # every syllable backwards, the song in reverse order
        return tuple(replace(s, reverse=True) for s in syllables), tuple(reversed(phrase)), gap
    # a faster singer: twice the repeats, shorter gaps, faster vibrato and pulse rates
    faster = tuple(
        replace(s, vibrato_hz=s.vibrato_hz * 2.0, rate_hz=s.rate_hz * 1.7) for s in syllables
    )
    return faster, tuple((i, 2 * lo, 2 * hi) for i, lo, hi in phrase), gap * 0.35


def make_voices(n_species: int, seed: int) -> list[Voice]:
    """`n_species` voices in look-alike groups (GROUP_FAMILIES, cycled)."""
    if n_species < 2:
        raise ValueError("the demo needs at least 2 species")
    rng = np.random.default_rng([seed, 1])
    names = _unique_names(n_species, rng)
    taxon_ids = rng.choice(np.arange(10_000, 999_999), size=n_species, replace=False)
    voices: list[Voice] = []
    group = 0
    while len(voices) < n_species:
        family, class_name, size = GROUP_FAMILIES[group % len(GROUP_FAMILIES)]
        syllables, phrase, gap, song_gap = _group_repertoire(family, rng)
        for member in range(min(size, n_species - len(voices))):
            index = len(voices)
            scientific, common, label = names[index]
            if class_name != "Aves":  # BirdCLEF labels non-birds by their iNaturalist id
                label = str(taxon_ids[index])
                genus = "Pristimantis" if class_name == "Amphibia" else "Copiphora"
                kind = "Rain Frog" if class_name == "Amphibia" else "Katydid"
                scientific = f"{genus} {scientific.split()[1]}"
                common = f"{common.split()[0]} {kind}"
            member_syllables, member_phrase, member_gap = _member(member, syllables, phrase, gap)
            voices.append(
                Voice(
                    label=label,
                    scientific_name=scientific,
                    common_name=common,
                    class_name=class_name,
                    inat_taxon_id=int(taxon_ids[index]),
                    syllables=member_syllables,
                    phrase=member_phrase,
                    syllable_gap_s=member_gap,
                    song_gap_s=song_gap,
                    group=group,
                )
            )
        group += 1
    return voices


def make_distractor_voices(seed: int, count: int = N_DISTRACTOR_VOICES) -> list[Voice]:
    """Species that are not in the taxonomy: they call in recordings and soundscapes, unlabelled,
    from the same syllable families and bands as the labelled ones."""
    rng = np.random.default_rng([seed, 7])
    families = [family for family, _, _ in GROUP_FAMILIES]
    voices = []
    for index in range(count):
        syllables, phrase, gap, song_gap = _group_repertoire(families[index % len(families)], rng)
        syllables, phrase, gap = _member(int(rng.integers(0, 3)), syllables, phrase, gap)
        voices.append(
            Voice(f"other{index}", "", "", "", 0, syllables, phrase, gap, song_gap, group=-1)
        )
    return voices


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


# ---------------------------------------------------------------------------------------------
# songs


def render_song(
    voice: Voice, sr: int, rng: np.random.Generator, pitch: float = 1.0, tempo: float = 1.0
) -> np.ndarray:
    """One song of `voice`: its phrase with random repeat counts, peak about 1."""
    parts = []
    for index, fewest, most in voice.phrase:
        for _ in range(int(rng.integers(fewest, most + 1))):
            syllable = render_syllable(
                voice.syllables[index], sr, rng, pitch * rng.normal(1, 0.015), tempo
            )
            parts += [
                syllable * rng.uniform(0.7, 1.0),
                np.zeros(int(voice.syllable_gap_s * tempo * rng.uniform(0.7, 1.3) * sr)),
            ]
    return np.concatenate(parts[:-1])


def _place_songs(
    track: np.ndarray,
    voice: Voice,
    sr: int,
    rng: np.random.Generator,
    sing_s: float,
    level: float,
    pitch: float,
    tempo: float,
    span: tuple[float, float] | None = None,
) -> list[tuple[float, float]]:
    """Add songs of `voice` to `track` at random places within `span` (seconds; default the
    whole track) until they last `sing_s` seconds (at least one song); returns (start, end)s."""
    first, last = (0, len(track)) if span is None else (int(span[0] * sr), int(span[1] * sr))
    times: list[tuple[float, float]] = []
    sung = 0.0
    while not times or sung < sing_s:
        song = render_song(voice, sr, rng, pitch, tempo)[: last - first]
        for _attempt in range(20):  # songs of one singer do not overlap
            begin = int(rng.integers(first, last - len(song) + 1))
            end = begin + len(song)
            if all(end <= a * sr or begin >= b * sr for a, b in times):
                break
        else:
            break
        track[begin:end] += level * song
        times.append((begin / sr, end / sr))
        sung += len(song) / sr
    return sorted(times)


def _place_bout(
    track: np.ndarray,
    voice: Voice,
    sr: int,
    rng: np.random.Generator,
    start_s: float,
    length_s: float,
    pitch: float,
    tempo: float,
) -> list[tuple[float, float]]:
    """Songs one after another (a singing bout) from `start_s` for about `length_s`."""
    times = []
    t = start_s
    end_s = min(len(track) / sr, start_s + length_s)
    while t < end_s:
        song = render_song(voice, sr, rng, pitch, tempo)
        begin = int(t * sr)
        song = song[: len(track) - begin]
        if len(song) < 0.05 * sr:
            break
        track[begin : begin + len(song)] += song
        times.append((begin / sr, (begin + len(song)) / sr))
        t = times[-1][1] + voice.song_gap_s * rng.uniform(0.6, 1.6)
    return times


# ---------------------------------------------------------------------------------------------
# training recordings


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


def _active_rms(audio: np.ndarray) -> float:
    active = np.abs(audio) > 1e-3 * (np.max(np.abs(audio)) + 1e-12)
    return float(np.sqrt(np.mean(audio[active] ** 2))) if active.any() else 1.0


def render_recording(
    spec: RecordingSpec, voices: dict[str, Voice], distractors: Sequence[Voice] = ()
) -> tuple[np.ndarray, dict[str, list[tuple[float, float]]]]:
    """Audio for `spec`, shape (frames, channels), float32, peak below full scale, and the
    (start, end) seconds of every song of each labelled species."""
    rng = np.random.default_rng(list(spec.seed))
    sr, n = spec.sample_rate, int(spec.duration_s * spec.sample_rate)
    pitch, tempo = rng.normal(1.0, 0.04), rng.normal(1.0, 0.1)  # this individual
    primary = np.zeros(n)
    coverage = rng.uniform(*PRIMARY_COVERAGE)
    events = {
        spec.primary: _place_songs(
            primary, voices[spec.primary], sr, rng, coverage * spec.duration_s, 1.0, pitch, tempo
        )
    }
    if rng.random() < 0.3:  # the singer was some way off
        primary = propagate(primary, sr, rng.uniform(3, 20), rng, rng.uniform(0.2, 0.8))[:n]
    level = _active_rms(primary)
    others = np.zeros(n)
    for label in spec.secondary:
        events[label] = _place_songs(
            others,
            voices[label],
            sr,
            rng,
            rng.uniform(0.03, 0.1) * spec.duration_s,
            level * 10 ** (-rng.uniform(3, 12) / 20) / 0.4,
            rng.normal(1, 0.04),
            rng.normal(1, 0.1),
        )
    # unlabelled sounds: other species, the recordist's voice, handling noise
    if distractors and rng.random() < 0.8:
        for voice in rng.choice(len(distractors), size=int(rng.integers(1, 3)), replace=False):
            _place_songs(
                others,
                distractors[voice],
                sr,
                rng,
                rng.uniform(0.03, 0.15) * spec.duration_s,
                level * 10 ** (rng.uniform(-8, 2) / 20) / 0.4,
                1.0,
                1.0,
            )
    if rng.random() < 0.25:
        speech = render_speech(min(rng.uniform(1, 4), spec.duration_s), sr, rng)
        begin = int(rng.integers(0, n - len(speech) + 1))
        others[begin : begin + len(speech)] += (
            level * 10 ** (rng.uniform(-6, 2) / 20) / 0.4 * speech
        )
    for _ in range(rng.poisson(spec.duration_s / 20)):
        thump = render_transient(sr, rng)[:n]
        begin = int(rng.integers(0, n - len(thump) + 1))
        others[begin : begin + len(thump)] += level * 10 ** (rng.uniform(-6, 3) / 20) / 0.4 * thump
    foreground = primary + others
    noise_rms = level / 10 ** (rng.uniform(0, 20) / 20)
    channels = [foreground + noise_rms * render_background_mix(n, sr, rng)]
    if spec.channels == 2:
        delay = int(rng.uniform(0, 0.002) * sr)
        shifted = np.concatenate([np.zeros(delay), foreground[: n - delay]])
        channels.append(
            rng.uniform(0.6, 1.0) * shifted + noise_rms * render_background_mix(n, sr, rng)
        )
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


def _render_and_write(job) -> None:
    spec, voices, distractors, root = job
    audio, _ = render_recording(spec, voices, distractors)
    write_ogg(Path(root) / spec.path, audio, spec.sample_rate)


# ---------------------------------------------------------------------------------------------
# soundscapes: a passive recorder, the callers at a distance


def render_soundscape(
    voices: Sequence[Voice], seed: tuple[int, ...], distractors: Sequence[Voice] = ()
) -> tuple[np.ndarray, dict[str, list[tuple[float, float]]]]:
    """A one-minute 32 kHz mono soundscape and the (start, end) times of each species' songs."""
    rng = np.random.default_rng(list(seed))
    sr, n = SOUNDSCAPE_RATE, SOUNDSCAPE_SECONDS * SOUNDSCAPE_RATE
    mix = np.zeros(n)
    events: dict[str, list[tuple[float, float]]] = {}
    n_present = int(rng.integers(1, min(5, len(voices)) + 1))
    callers = [voices[i] for i in sorted(rng.choice(len(voices), n_present, replace=False))]
    extras = (
        [
            distractors[i]
            for i in rng.choice(len(distractors), min(2, len(distractors)), replace=False)
        ]
        if distractors
        else []
    )
    for voice in callers + extras[: int(rng.integers(0, len(extras) + 1))]:
        pitch, tempo = rng.normal(1.0, 0.04), rng.normal(1.0, 0.1)
        for _bout in range(int(rng.integers(1, 3))):
            bout = np.zeros(n)
            times = _place_bout(
                bout,
                voice,
                sr,
                rng,
                rng.uniform(0, SOUNDSCAPE_SECONDS - 4),
                rng.uniform(5, 30),
                pitch,
                tempo,
            )
            if not times:
                continue
            distance = rng.uniform(8, 45)
            first, last = int(times[0][0] * sr), int(times[-1][1] * sr)
            heard = propagate(bout[first:last], sr, distance, rng, rng.uniform(0.4, 1.5))
            end = min(n, first + len(heard))
            mix[first:end] += heard[: end - first] * (5.0 / distance) * rng.uniform(0.7, 1.0)
            if voice.group >= 0:
                events.setdefault(voice.label, []).extend(times)
    reference = 0.35  # RMS of a song at 5 m, whose SNR is drawn below
    background = render_background_mix(n, sr, rng)
    audio = mix + reference / 10 ** (rng.uniform(12, 24) / 20) * background
    audio *= 10 ** (-rng.uniform(2, 8) / 20) / (np.max(np.abs(audio)) + 1e-12)
    return audio.astype(np.float32), {label: sorted(t) for label, t in events.items()}


def window_labels(
    events: dict[str, list[tuple[float, float]]],
    classes: Sequence[str],
    duration_s: int = SOUNDSCAPE_SECONDS,
    window_s: int = WINDOW_SECONDS,
) -> np.ndarray:
    """(n_windows, n_classes) 0/1: a species is present in a window that holds at least half of
    one of its songs, or 0.25 s of it for songs longer than 0.5 s."""
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


def _soundscape_job(job):
    path, voices, distractors, seed = job
    audio, events = render_soundscape(voices, seed, distractors)
    write_ogg(path, audio, SOUNDSCAPE_RATE)
    return events


# ---------------------------------------------------------------------------------------------
# the data set


def _draw_duration(rng: np.random.Generator) -> float:
    u = rng.random()
    if u < 0.10:
        return float(rng.uniform(3.0, 5.0))
    if u < 0.78:
        return float(rng.uniform(5, 30))
    if u < 0.96:
        return float(rng.uniform(30, 60))
    return float(rng.uniform(60, 150))


def _draw_sample_rate(rng: np.random.Generator, highest_hz: float) -> int:
    rates = [
        (r, w)
        for r, w in zip(SAMPLE_RATES, SAMPLE_RATE_WEIGHTS, strict=True)
        if r / 2 > 1.1 * highest_hz
    ]
    weights = np.array([w for _, w in rates])
    return int(rates[rng.choice(len(rates), p=weights / weights.sum())][0])


def recording_counts(
    n_species: int, max_per_species: int, min_per_species: int, rng: np.random.Generator
) -> list[int]:
    """A long tail: from `max_per_species` down to `min_per_species` along a parabola (the
    commonest classes fall off fast, then a tail of rare ones), in a random order of the species.
    With 60 and 2 for 12 species: 60, 50, 41, 33, 25, 19, 14, 10, 6, 4, 2, 2."""
    if n_species == 1:
        return [max_per_species]
    remaining = 1 - np.arange(n_species) / (n_species - 1)
    counts = min_per_species + (max_per_species - min_per_species) * remaining**2
    return [int(c) for c in np.round(counts)[rng.permutation(n_species)]]


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
    voices: Sequence[Voice], max_per_species: int, min_per_species: int, seed: int
) -> tuple[list[RecordingSpec], list[dict]]:
    """Specs and train.csv rows of every training recording (no audio rendered yet)."""
    rng = np.random.default_rng([seed, 2])
    counts = recording_counts(len(voices), max_per_species, min_per_species, rng)
    specs, rows, used_ids = [], [], set()
    for species_index, (voice, count) in enumerate(zip(voices, counts, strict=True)):
        for recording_index in range(count):
            secondary: list[str] = []
            draw = rng.random()
            n_secondary = 2 if draw < 0.07 else 1 if draw < 0.30 else 0
            others = [v.label for v in voices if v.label != voice.label]
            if n_secondary and others:
                secondary = [
                    str(x)
                    for x in rng.choice(others, size=min(n_secondary, len(others)), replace=False)
                ]
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
            highest = max(v.highest_hz for v in voices if v.label in [voice.label, *secondary])
            spec = RecordingSpec(
                path=f"{voice.label}/{file_id}.ogg",
                primary=voice.label,
                secondary=tuple(secondary),
                duration_s=round(_draw_duration(rng), 3),
                sample_rate=_draw_sample_rate(rng, min(highest, 10_000)),
                channels=2 if rng.random() < STEREO_FRACTION else 1,
                seed=(seed, 3, species_index, recording_index),
            )
            specs.append(spec)
            rows.append(_metadata_row(voice, spec, rng, file_id, collection))
    return specs, rows


def _soundscape_names(count: int, rng: np.random.Generator) -> list[str]:
    names: list[str] = []
    for _ in range(count):
        day = int(rng.integers(1, 29))
        minute = int(rng.integers(0, 6)) * 10
        name = f"{rng.choice(_SITES)}_202304{day:02d}_{int(rng.integers(4, 9)):02d}{minute:02d}00"
        while name in names:
            name += "a"
        names.append(name)
    return names


def generate_demo_data(
    out_dir: str | Path,
    n_species: int = 12,
    max_per_species: int = 60,
    min_per_species: int = 2,
    seed: int = 0,
    n_test_soundscapes: int = 12,
    n_train_soundscapes: int = 20,
    workers: int | None = None,
) -> dict:
    """Write a complete BirdCLEF-2025-layout data set to `out_dir`; returns a short summary."""
    if not 1 <= min_per_species <= max_per_species:
        raise ValueError("need 1 <= min_per_species <= max_per_species")
    out_dir = Path(out_dir)
    voices = make_voices(n_species, seed)
    distractors = make_distractor_voices(seed)
    by_label = {voice.label: voice for voice in voices}
    specs, rows = plan_recordings(voices, max_per_species, min_per_species, seed)
    workers = workers or os.cpu_count() or 1
    out_dir.mkdir(parents=True, exist_ok=True)

    names = _soundscape_names(
        n_test_soundscapes + n_train_soundscapes, np.random.default_rng([seed, 4])
    )
    test_names = sorted(names[:n_test_soundscapes])
    train_names = sorted(names[n_test_soundscapes:])
    soundscape_jobs = [
        (out_dir / "test_soundscapes" / f"{name}.ogg", voices, distractors, (seed, 5, i))
        for i, name in enumerate(test_names)
    ] + [
        (out_dir / "train_soundscapes" / f"{name}.ogg", voices, distractors, (seed, 6, i))
        for i, name in enumerate(train_names)
    ]
    (out_dir / "test_soundscapes").mkdir(exist_ok=True)
    (out_dir / "train_soundscapes").mkdir(exist_ok=True)

    recording_jobs = [(spec, by_label, distractors, str(out_dir / "train_audio")) for spec in specs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # longest first, so one several-minute recording does not finish last on its own
        order = sorted(range(len(recording_jobs)), key=lambda i: -specs[i].duration_s)
        list(pool.map(_render_and_write, [recording_jobs[i] for i in order], chunksize=1))
        events = list(pool.map(_soundscape_job, soundscape_jobs))

    classes = [voice.label for voice in voices]
    pd.DataFrame(rows, columns=list(TRAIN_COLUMNS)).to_csv(
        out_dir / "train.csv", index=False, lineterminator="\n"
    )
    taxonomy = pd.DataFrame(
        [
            {
                "primary_label": v.label,
                "inat_taxon_id": v.inat_taxon_id,
                "scientific_name": v.scientific_name,
                "common_name": v.common_name,
                "class_name": v.class_name,
            }
            for v in voices
        ]
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
        "recordings_per_species": {
            label: sum(s.primary == label for s in specs) for label in classes
        },
        "audio_hours": round(sum(spec.duration_s for spec in specs) / 3600, 3),
        "test_soundscapes": len(test_names),
        "train_soundscapes": len(train_names),
    }
