from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dawnchorus.config import AudioParams, load_config
from dawnchorus.data.manifest import parse_label_list
from dawnchorus.demo.layout import (
    GROUND_TRUTH_CSV,
    TAXONOMY_COLUMNS,
    TRAIN_COLUMNS,
    generate_demo_data,
    plan_recordings,
)
from dawnchorus.demo.recordings import PRIMARY_COVERAGE, render_recording
from dawnchorus.demo.sounds import propagate
from dawnchorus.demo.voices import make_distractor_voices, make_voices, render_song
from dawnchorus.signal.features import log_mel


def test_layout_matches_birdclef_2025(tiny_demo):
    train = pd.read_csv(tiny_demo / "train.csv", dtype=str, keep_default_na=False)
    taxonomy = pd.read_csv(tiny_demo / "taxonomy.csv", dtype=str)
    assert list(train.columns) == list(TRAIN_COLUMNS)
    assert list(taxonomy.columns) == list(TAXONOMY_COLUMNS)
    assert set(train["primary_label"]) == set(taxonomy["primary_label"])
    for row in train.itertuples():
        assert row.filename.startswith(f"{row.primary_label}/")
        assert (tiny_demo / "train_audio" / row.filename).is_file()
        parse_label_list(row.secondary_labels)
    assert (train["secondary_labels"] == "['']").any()
    assert set(taxonomy["class_name"]) == {"Aves", "Amphibia", "Insecta"}
    assert taxonomy.loc[taxonomy["class_name"] != "Aves", "primary_label"].str.isdigit().all()

    soundscapes = sorted(p.stem for p in (tiny_demo / "test_soundscapes").glob("*.ogg"))
    assert len(soundscapes) == 2 and len(list((tiny_demo / "train_soundscapes").glob("*.ogg")))
    sample = pd.read_csv(tiny_demo / "sample_submission.csv")
    truth = pd.read_csv(tiny_demo / GROUND_TRUTH_CSV)
    assert list(sample.columns) == ["row_id", *taxonomy["primary_label"]]
    assert list(truth.columns) == list(sample.columns)
    assert (
        sample["row_id"].tolist()
        == truth["row_id"].tolist()
        == [f"{stem}_{end}" for stem in soundscapes for end in range(5, 61, 5)]
    )
    assert truth.iloc[:, 1:].to_numpy().sum() > 0
    for stem in soundscapes:
        info = sf.info(str(tiny_demo / "test_soundscapes" / f"{stem}.ogg"))
        assert (info.samplerate, info.channels) == (32000, 1)
        assert info.duration == pytest.approx(60, abs=0.01)


def test_generation_is_deterministic(tmp_path, tiny_demo):
    again = tmp_path / "again"
    generate_demo_data(
        again,
        n_species=6,
        max_per_species=8,
        seed=7,
        n_test_soundscapes=2,
        n_train_soundscapes=1,
        workers=1,
    )
    for name in ("train.csv", "taxonomy.csv", "sample_submission.csv", GROUND_TRUTH_CSV):
        assert (again / name).read_bytes() == (tiny_demo / name).read_bytes(), name
    train = pd.read_csv(tiny_demo / "train.csv")
    for filename in train["filename"].head(5):
        first, _ = sf.read(tiny_demo / "train_audio" / filename)
        second, _ = sf.read(again / "train_audio" / filename)
        np.testing.assert_array_equal(first, second)


def test_recordings_vary_like_field_data():
    voices = make_voices(12, seed=0)
    specs, rows = plan_recordings(voices, max_per_species=60, min_per_species=2, seed=0)
    durations = [spec.duration_s for spec in specs]
    assert min(durations) < 5 and max(durations) > 60
    rates = Counter(spec.sample_rate for spec in specs)
    assert len(rates) >= 4 and rates.most_common(1)[0][0] == 32000
    assert 0.05 < np.mean([spec.channels == 2 for spec in specs]) < 0.3
    assert 0.1 < np.mean([bool(spec.secondary) for spec in specs]) < 0.5
    counts = sorted(Counter(spec.primary for spec in specs).values())
    assert counts[-1] == 60 and counts[0] == 2  # a long tail
    assert sum(count < 10 for count in counts) >= 3
    assert len({row["filename"] for row in rows}) == len(rows)


@pytest.fixture(scope="module")
def rendered():
    voices = make_voices(8, seed=1)
    by_label = {voice.label: voice for voice in voices}
    specs, _ = plan_recordings(voices, max_per_species=10, min_per_species=2, seed=1)
    chosen = [spec for spec in specs if spec.duration_s >= 10][:8]
    chosen += [spec for spec in specs if spec.secondary][:4]
    distractors = make_distractor_voices(1)
    return [(spec, *render_recording(spec, by_label, distractors)) for spec in chosen]


def test_weak_labels_the_species_sings_in_a_small_part_of_the_recording(rendered):
    low, high = PRIMARY_COVERAGE
    for spec, audio, events in rendered:
        assert audio.shape == (int(spec.duration_s * spec.sample_rate), spec.channels)
        sung = sum(end - start for start, end in events[spec.primary])
        longest = max(end - start for start, end in events[spec.primary])
        # songs are added until the share is reached: at most one song more than the share
        assert low * spec.duration_s <= sung <= high * spec.duration_s + longest, spec
        # and the rest is not silence: background and other sounds everywhere
        quiet = np.sqrt(np.mean(audio[:, 0] ** 2))
        assert quiet > 0 and np.isfinite(audio).all()


def test_secondary_species_really_call_in_the_clip(rendered):
    with_secondary = [item for item in rendered if item[0].secondary]
    assert with_secondary
    for spec, _, events in with_secondary:
        for label in (spec.primary, *spec.secondary):
            assert events[label], f"{label} was labelled but never calls in {spec.path}"
            assert all(0 <= start < end <= spec.duration_s + 1e-6 for start, end in events[label])


def _song_mel(voice, seed):
    params = AudioParams.from_config(load_config(overrides={"data_dir": "x"}))
    song = render_song(voice, 32000, np.random.default_rng(seed)).astype(np.float32)
    return log_mel(song, params)


def test_look_alikes_share_their_average_spectrum_but_not_their_pattern():
    voices = make_voices(12, seed=2)
    groups = Counter(voice.group for voice in voices)
    assert sorted(groups.values(), reverse=True)[:2] == [3, 3] and min(groups.values()) >= 2
    by_group = {}
    for voice in voices:
        by_group.setdefault(voice.group, []).append(voice)
    for members in by_group.values():
        first, second = members[0], members[1]
        assert [s.kind for s in first.syllables] == [s.kind for s in second.syllables]
        mel_a, mel_b = _song_mel(first, 0), _song_mel(second, 0)
        frames = min(len(mel_a), len(mel_b))
        mel_a, mel_b = mel_a[:frames], mel_b[:frames]
        mean_similarity = np.corrcoef(mel_a.mean(axis=0), mel_b.mean(axis=0))[0, 1]
        pattern_similarity = np.corrcoef(mel_a.ravel(), mel_b.ravel())[0, 1]
        assert mean_similarity > 0.9, (first.syllables[0].kind, mean_similarity)
        assert pattern_similarity < mean_similarity - 0.1, (first.syllables[0].kind,)


def test_distance_makes_a_call_reverberant_and_dull():
    voice = make_voices(6, seed=3)[0]
    song = render_song(voice, 32000, np.random.default_rng(0))
    near = propagate(song, 32000, 5.0, np.random.default_rng(1), reverb_s=0.8)
    far = propagate(song, 32000, 45.0, np.random.default_rng(1), reverb_s=0.8)

    def high_share(audio):  # energy above 4 kHz
        spectrum = np.abs(np.fft.rfft(audio)) ** 2
        freqs = np.fft.rfftfreq(len(audio), 1 / 32000)
        return spectrum[freqs > 4000].sum() / spectrum.sum()

    assert high_share(far) < high_share(near)
    tail = slice(len(song), None)  # after the song: only its reverberation
    assert np.std(far[tail]) / np.std(far) > np.std(near[tail]) / np.std(near)


def test_soundscapes_hold_several_distant_callers_with_their_times(tiny_demo):
    truth = pd.read_csv(tiny_demo / GROUND_TRUTH_CSV)
    assert truth.iloc[:, 1:].to_numpy().sum() > 0
    voices = make_voices(6, seed=7)
    from dawnchorus.demo.recordings import render_soundscape

    audio, events = render_soundscape(voices, (7, 5, 0), make_distractor_voices(7))
    assert audio.shape == (60 * 32000,) and np.abs(audio).max() < 1
    assert events and set(events) <= {voice.label for voice in voices}
    for times in events.values():
        assert all(0 <= start < end <= 60 for start, end in times)


def test_cli_writes_a_data_set(tmp_path):
    out = tmp_path / "cli_demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dawnchorus.cli",
            "demo-data",
            str(out),
            "--species",
            "3",
            "--max-per-species",
            "3",
            "--test-soundscapes",
            "1",
            "--train-soundscapes",
            "0",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(result.stdout)
    assert summary["species"] == 3
    assert len(pd.read_csv(out / "train.csv")) == summary["recordings"]
