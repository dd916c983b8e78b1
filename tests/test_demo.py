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
from dawnchorus.demo import (
    GROUND_TRUTH_CSV,
    TAXONOMY_COLUMNS,
    TRAIN_COLUMNS,
    generate_demo_data,
    make_voices,
    plan_recordings,
    render_call,
    render_recording,
)
from dawnchorus.features import log_mel
from dawnchorus.manifest import parse_label_list


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
        per_species=5,
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
    specs, rows = plan_recordings(voices, per_species=40, seed=0)
    durations = [spec.duration_s for spec in specs]
    assert min(durations) < 5 and max(durations) > 90
    rates = Counter(spec.sample_rate for spec in specs)
    assert len(rates) >= 4 and rates.most_common(1)[0][0] == 32000
    assert 0.05 < np.mean([spec.channels == 2 for spec in specs]) < 0.3
    assert 0.1 < np.mean([bool(spec.secondary) for spec in specs]) < 0.5
    counts = Counter(spec.primary for spec in specs)
    assert max(counts.values()) >= 2 * min(counts.values())  # imbalanced classes
    assert len({row["filename"] for row in rows}) == len(rows)


def test_secondary_species_really_call_in_the_clip():
    voices = make_voices(8, seed=1)
    by_label = {voice.label: voice for voice in voices}
    specs, _ = plan_recordings(voices, per_species=10, seed=1)
    with_secondary = [spec for spec in specs if spec.secondary][:6]
    assert with_secondary
    for spec in with_secondary:
        audio, events = render_recording(spec, by_label)
        assert audio.shape == (int(spec.duration_s * spec.sample_rate), spec.channels)
        for label in (spec.primary, *spec.secondary):
            assert events[label], f"{label} was labelled but never calls in {spec.path}"
            assert all(0 <= start < end <= spec.duration_s + 1e-6 for start, end in events[label])


def test_look_alike_twins_share_their_average_spectrum_but_not_their_pattern():
    voices = make_voices(10, seed=2)
    by_label = {voice.label: voice for voice in voices}
    params = AudioParams.from_config(load_config(overrides={"data_dir": "x"}))
    twins = {(v.label, v.twin) for v in voices if v.twin and v.label < v.twin}
    assert len(twins) == 4  # 8 birds in pairs, plus a frog and an insect
    for first, second in twins:
        a, b = by_label[first], by_label[second]
        assert (a.call_type, a.f_low, a.f_high) == (b.call_type, b.f_low, b.f_high)
        assert a.rising != b.rising
        mel_a = log_mel(render_call(a, 32000, np.random.default_rng(0)).astype(np.float32), params)
        mel_b = log_mel(render_call(b, 32000, np.random.default_rng(0)).astype(np.float32), params)
        frames = min(len(mel_a), len(mel_b))
        mel_a, mel_b = mel_a[:frames], mel_b[:frames]
        mean_similarity = np.corrcoef(mel_a.mean(axis=0), mel_b.mean(axis=0))[0, 1]
        pattern_similarity = np.corrcoef(mel_a.ravel(), mel_b.ravel())[0, 1]
        assert mean_similarity > 0.95, (a.call_type, mean_similarity)
        assert pattern_similarity < mean_similarity - 0.1, (a.call_type, pattern_similarity)


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
            "--per-species",
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
