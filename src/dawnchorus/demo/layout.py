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

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from dawnchorus.demo.recordings import (
    SOUNDSCAPE_SECONDS,
    WINDOW_SECONDS,
    RecordingSpec,
    render_and_write,
    soundscape_job,
    window_labels,
)
from dawnchorus.demo.voices import Voice, make_distractor_voices, make_voices

SAMPLE_RATES = (32000, 44100, 48000, 22050, 16000)
SAMPLE_RATE_WEIGHTS = (0.60, 0.15, 0.13, 0.08, 0.04)
STEREO_FRACTION = 0.15
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
        list(pool.map(render_and_write, [recording_jobs[i] for i in order], chunksize=1))
        events = list(pool.map(soundscape_job, soundscape_jobs))

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


def write_catalogue_only(folder: str | Path, n_classes: int = 206, n_rows: int = 28564) -> Path:
    """train.csv and taxonomy.csv of a BirdCLEF 2025-sized data set (its 206 classes, 28,564
    rows), no audio: enough for `snakemake -n` to plan a run of that size."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    classes = [f"sp{i:03d}" for i in range(n_classes)]
    pd.DataFrame({"primary_label": classes}).to_csv(folder / "taxonomy.csv", index=False)
    labels = [classes[i % n_classes] for i in range(n_rows)]
    pd.DataFrame(
        {
            "primary_label": labels,
            "secondary_labels": "['']",
            "filename": [f"{label}/XC{i}.ogg" for i, label in enumerate(labels)],
        }
    ).to_csv(folder / "train.csv", index=False)
    return folder
