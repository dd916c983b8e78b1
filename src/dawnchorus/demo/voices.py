"""Synthetic species for the demo: look-alike groups of voices (a syllable repertoire and a song
grammar each, built from `sounds`), and their songs placed on a track."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from dawnchorus.demo.sounds import Syllable, render_syllable

# look-alike groups, in the order they are made: (syllable family, class, group size)
GROUP_FAMILIES = (
    ("whistle", "Aves", 3),
    ("formant", "Amphibia", 2),
    ("pulses", "Insecta", 2),
    ("trill", "Aves", 3),
    ("stack", "Aves", 2),
    ("noisy", "Aves", 2),
)
N_DISTRACTOR_VOICES = 8

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


def place_songs(
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


def place_bout(
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
