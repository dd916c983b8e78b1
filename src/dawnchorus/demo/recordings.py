"""The demo's audio: weakly labelled training recordings (the labelled species sings in a small
part, among unlabelled sounds and background) and passive-recorder soundscapes (several species
at a distance), with the times of every labelled song."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from dawnchorus.demo.sounds import (
    propagate,
    render_background_mix,
    render_speech,
    render_transient,
)
from dawnchorus.demo.voices import Voice, place_bout, place_songs

SOUNDSCAPE_SECONDS = 60
SOUNDSCAPE_RATE = 32000
WINDOW_SECONDS = 5
# the labelled species sings in this share of a training recording (weak labels)
PRIMARY_COVERAGE = (0.05, 0.30)


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
        spec.primary: place_songs(
            primary, voices[spec.primary], sr, rng, coverage * spec.duration_s, 1.0, pitch, tempo
        )
    }
    if rng.random() < 0.3:  # the singer was some way off
        primary = propagate(primary, sr, rng.uniform(3, 20), rng, rng.uniform(0.2, 0.8))[:n]
    level = _active_rms(primary)
    others = np.zeros(n)
    for label in spec.secondary:
        events[label] = place_songs(
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
            place_songs(
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


def render_and_write(job) -> None:
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
            times = place_bout(
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


def soundscape_job(job):
    path, voices, distractors, seed = job
    audio, events = render_soundscape(voices, seed, distractors)
    write_ogg(path, audio, SOUNDSCAPE_RATE)
    return events
