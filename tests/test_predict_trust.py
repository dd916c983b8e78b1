"""`dawnchorus predict` as a person relies on it: a rerun never keeps another model's or other
settings' outputs, a changed recording is predicted again, a damaged one says what happened in
plain words, selections end where the recording does, and the options cannot swallow inputs."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from support import tone, write_audio

from dawnchorus.cli import main
from dawnchorus.data.manifest import class_names
from dawnchorus.inference.export import export_tflite
from dawnchorus.inference.recordings import recording_windows, window_features
from dawnchorus.inference.run_record import (
    LEDGER,
    RUN_RECORD,
    Stamp,
    append_ledger,
    differences,
    read_ledger,
    run_record,
)
from dawnchorus.learning.modelcard import audio_params, read_metadata

pytestmark = pytest.mark.training
RATE = 32000


def _mtimes(folder):
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


def _counts(stderr: str) -> dict[str, int]:
    """The summary's counts: {"predicted": n, "in part": n, "failed": n, "skipped": n}."""
    found = {}
    for name, pattern in {
        "predicted": r"(\d+) recording\(s\) predicted \(",
        "in part": r"(\d+) recording\(s\) predicted in part",
        "failed": r"(\d+) recording\(s\) failed",
        "skipped": r"(\d+) recording\(s\) skipped",
    }.items():
        match = re.search(pattern, stderr)
        found[name] = int(match.group(1)) if match else 0
    return found


def test_a_rerun_with_another_model_or_settings_stops_before_predicting(tmp_path, folds, capsys):
    recordings = tmp_path / "site1"
    write_audio(recordings / "a.wav", tone(12.0, RATE), RATE)
    out = tmp_path / "out"
    both = ",".join(map(str, folds))
    argv = ["predict", str(recordings), "--out", str(out)]
    assert main([*argv, "--models", both]) == 0
    record = json.loads((out / RUN_RECORD).read_text())
    assert [entry["file"] for entry in record["model"]["files"]] == [str(f) for f in folds]
    assert record["settings"]["--format"] == ["csv"]
    capsys.readouterr()
    before = _mtimes(out)

    # the same command again: nothing to do, nothing touched
    assert main([*argv, "--models", both]) == 0
    assert _counts(capsys.readouterr().err)["skipped"] == 1
    assert _mtimes(out) == before

    # other settings, another model: refused by name, nothing predicted or changed
    assert main([*argv, "--models", both, "--top-k", "2", "--format", "csv,raven"]) == 2
    err = capsys.readouterr().err
    assert "--top-k: not given (earlier) -> 2 (now)" in err
    assert "--format: csv (earlier) -> csv,raven (now)" in err
    assert "--overwrite" in err
    assert main([*argv, "--models", str(folds[0])]) == 2
    err = capsys.readouterr().err
    assert "fold_1.keras: sha256" in err and "-> absent (now)" in err
    assert "what predicts:" in err  # two fold models -> one
    assert _mtimes(out) == before

    # --overwrite: everything again with the new settings
    assert main([*argv, "--models", str(folds[0]), "--top-k", "2", "--overwrite"]) == 0
    assert _counts(capsys.readouterr().err) == {
        "predicted": 1,
        "in part": 0,
        "failed": 0,
        "skipped": 0,
    }
    assert pd.read_csv(out / "a.wav.csv")["rank"].tolist() == [1, 2] * 3
    assert json.loads((out / RUN_RECORD).read_text())["settings"]["--top-k"] == 2


def test_outputs_without_a_record_are_not_taken_as_this_runs(tmp_path, folds, capsys):
    """A folder an older version (or a person) filled: the recordings' outputs are there but
    nothing says what made them."""
    recording = write_audio(tmp_path / "a.wav", tone(6.0, RATE), RATE)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.wav.csv").write_text("filename,start_s,end_s\n")
    argv = ["predict", str(recording), "--models", str(folds[0]), "--out", str(out)]
    assert main(argv) == 2
    assert "no record of what made them" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert len(pd.read_csv(out / "a.wav.csv")) == 2


def test_a_recording_replaced_between_runs_is_predicted_again(tmp_path, folds, capsys):
    recordings = tmp_path / "site1"
    write_audio(recordings / "good.wav", tone(6.0, RATE), RATE)
    (recordings / "bad.ogg").write_text("not audio at all\n")
    out = tmp_path / "out"
    argv = ["predict", str(recordings), "--models", str(folds[0]), "--out", str(out)]
    assert main(argv) == 1
    assert not (out / "bad.ogg.csv").exists(), "no window, no output file"
    good_written = (out / "good.wav.csv").stat().st_mtime_ns
    capsys.readouterr()

    # the bad file replaced by a good recording (say, copied again from the card)
    (recordings / "bad.ogg").unlink()
    write_audio(recordings / "bad.ogg", tone(11.0, RATE), RATE)
    assert main(argv) == 0, "its problem is gone with it"
    assert _counts(capsys.readouterr().err) == {
        "predicted": 1,
        "in part": 0,
        "failed": 0,
        "skipped": 1,
    }
    assert pd.read_csv(out / "problems.csv").empty
    assert len(pd.read_csv(out / "bad.ogg.csv")) == 3
    assert (out / "good.wav.csv").stat().st_mtime_ns == good_written

    # a recording changed in place (same name, new content) is redone too
    write_audio(recordings / "good.wav", tone(16.0, RATE), RATE)
    assert main(argv) == 0
    assert len(pd.read_csv(out / "good.wav.csv")) == 4


def test_damaged_recordings_are_named_in_plain_words_and_the_counts_are_exact(
    tmp_path, folds, capsys
):
    """An empty file, a text file named .ogg and a recording of each format cut in half: the
    cut ones keep their windows before the cut, each gets a problems.csv row with the seconds
    decoded; the unreadable ones get no output file."""
    recordings = tmp_path / "card"
    (recordings / "empty.ogg").parent.mkdir(parents=True)
    (recordings / "empty.ogg").write_bytes(b"")
    (recordings / "notes.ogg").write_text("field notes, not audio\n" * 10)
    for suffix in (".ogg", ".flac", ".mp3", ".wav"):
        whole = write_audio(tmp_path / f"whole{suffix}", tone(24.0, RATE), RATE)
        (recordings / f"cut{suffix}").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    write_audio(recordings / "fine.flac", tone(20.0, RATE), RATE)
    out = tmp_path / "out"
    argv = ["predict", str(recordings), "--models", str(folds[0]), "--out", str(out)]
    assert main([*argv, "--format", "csv,raven"]) == 1
    err = capsys.readouterr().err
    assert _counts(err) == {"predicted": 1, "in part": 4, "failed": 2, "skipped": 0}

    problems = pd.read_csv(out / "problems.csv", keep_default_na=False).set_index("path")
    reason = problems["problem"].to_dict()
    assert reason[str(recordings / "empty.ogg")] == "empty file (0 bytes)"
    assert reason[str(recordings / "notes.ogg")].startswith("not an audio file")
    assert set(problems["outcome"]) == {"failed", "partial"}
    for suffix in (".flac", ".mp3", ".wav"):
        row = problems.loc[str(recordings / f"cut{suffix}")]
        assert row["outcome"] == "partial"
        assert row["problem"] == f"truncated: {float(row['decoded_s']):.1f} of 24.0 s decoded"
    assert "Ogg stream stops" in reason[str(recordings / "cut.ogg")]
    for name in ("empty.ogg", "notes.ogg"):
        assert not list(out.glob(f"{name}.*")), "no window: no output file"
    for suffix in (".ogg", ".flac", ".mp3", ".wav"):
        windows = pd.read_csv(out / f"cut{suffix}.csv")
        decoded = float(problems.loc[str(recordings / f"cut{suffix}"), "decoded_s"])
        assert 8 < decoded < 16
        # the windows before the cut, its last one the tail (of at least --min-last-window)
        assert len(windows) == int(decoded // 5) + (decoded % 5 >= 1.0)
        assert windows["end_s"].iloc[-1] == pytest.approx(decoded, abs=0.05) or decoded % 5 < 1
        assert windows["end_s"].max() <= decoded + 0.05  # (decoded_s: 0.1 s in problems.csv)
    assert "fine.flac" not in " ".join(problems.index)
    ledger = pd.read_csv(out / LEDGER)
    assert sorted(ledger["outcome"]) == ["failed"] * 2 + ["partial"] * 4 + ["predicted"]


def test_selections_end_where_the_recording_does(tmp_path, folds):
    recordings = tmp_path / "rec"
    write_audio(recordings / "long.wav", tone(62.0, RATE), RATE)
    write_audio(recordings / "short.wav", tone(29.7, RATE), RATE)
    write_audio(recordings / "tiny.wav", tone(0.8, RATE), RATE)  # under --min-last-window
    out = tmp_path / "out"
    argv = ["predict", str(recordings), "--models", str(folds[0]), "--out", str(out)]
    options = ["--format", "csv,raven,audacity", "--min-confidence", "0", "--min-last-window", "1"]
    assert main([*argv, *options]) == 0
    for name, duration, rows in (
        ("long.wav", 62.0, 13),
        ("short.wav", 29.7, 6),
        ("tiny.wav", 0.8, 1),  # its only window: predicted whatever its length
    ):
        table = pd.read_csv(out / f"{name}.csv")
        assert table["end_s"].max() == pytest.approx(duration)
        assert table["end_s"].nunique() == rows
        raven = pd.read_csv(out / f"{name}.selections.txt", sep="\t")
        assert raven["End Time (s)"].max() == pytest.approx(duration)
        assert (raven["End Time (s)"] > raven["Begin Time (s)"]).all()
        labels = (out / f"{name}.labels.txt").read_text().splitlines()
        assert max(float(line.split("\t")[1]) for line in labels) == pytest.approx(duration)


def test_options_of_several_values_cannot_swallow_the_inputs(tmp_path, folds, capsys):
    folder = tmp_path / "site1"
    write_audio(folder / "a.wav", tone(6.0, RATE), RATE)
    models = tmp_path / "models"  # results/models' layout
    for k, fold in enumerate(folds):
        (models / f"fold_{k}").mkdir(parents=True)
        shutil.copy(fold, models / f"fold_{k}" / "model.keras")
    out = tmp_path / "out"
    # as a user types it: options before the folder
    argv = ["predict", "--models", str(models), "--format", "raven", str(folder), "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "predicting with the CNN's keras ensemble of 2 fold model(s)" in err
    assert (out / "a.wav.selections.txt").is_file()
    # a shell glob of fold models after --models: the second is no recording
    glob = ["predict", "--models", str(folds[0]), str(folds[1]), str(folder), "--out", str(out)]
    assert main(glob) == 2
    assert "is a model file, not a recording" in capsys.readouterr().err
    assert not (tmp_path / "out" / "fold_1.keras.csv").exists()
    for bad, message in (
        (["--batch-size", "-1"], "--batch-size must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--format", "raven,csvv"], "--format csvv: not one of"),
        (["--min-last-window", "-2"], "--min-last-window must be 0 or more"),
    ):
        code = main(["predict", "--models", str(folds[0]), str(folder), "--out", str(out), *bad])
        assert code == 2, bad
        assert message in capsys.readouterr().err
    cnn_only = ["predict", str(folder), "--models", str(folds[0]), "--cnn-only"]
    assert main([*cnn_only, "--out", str(tmp_path / "c")]) == 0
    assert "fold model(s) (--cnn-only)" in capsys.readouterr().err


def test_a_row_a_killed_run_left_half_written_is_ignored(tmp_path):
    """recordings.csv: the half row is not read (that recording is predicted again), and the
    next row appended after it is."""
    out = tmp_path / "out"
    out.mkdir()
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    append_ledger(out, a, Stamp(10, 20), "predicted", 1, 5.0, None, ["a.wav.csv"])
    with open(out / LEDGER, "a", encoding="utf-8") as handle:
        handle.write(f"{b.resolve()},10,2")  # killed mid-row
    assert list(read_ledger(out)) == [str(a.resolve())]
    append_ledger(out, b, Stamp(11, 21), "partial", 2, 9.1, "truncated: 9.1 of 20.0 s decoded")
    rows = read_ledger(out)
    assert rows[str(b.resolve())].stamp == Stamp(11, 21)
    assert rows[str(b.resolve())].problem == "truncated: 9.1 of 20.0 s decoded"
    assert os.path.getsize(out / LEDGER) > 0


def test_run_record_differences_name_what_changed():
    model = {"predicts": "x", "files": [{"file": "/e/model.tflite", "sha256": "a" * 64}]}
    settings = {"--top-k": None, "--format": ["csv"]}
    earlier = run_record(model, settings)
    assert differences(earlier, run_record(model, settings)) == []
    moved = {**model, "files": [{"file": "/elsewhere/model.tflite", "sha256": "a" * 64}]}
    assert differences(earlier, run_record(moved, settings)) == [], "the same bytes elsewhere"
    other = {**model, "files": [{"file": "/e/model.tflite", "sha256": "b" * 64}]}
    assert differences(earlier, run_record(other, {**settings, "--top-k": 3})) == [
        "model file model.tflite: sha256 aaaaaaaaaaaa (earlier) -> sha256 bbbbbbbbbbbb (now)",
        "--top-k: not given (earlier) -> 3 (now)",
    ]
    assert differences({}, earlier) == [
        "run.json is missing parts or from another version of dawnchorus"
    ]


def test_an_exports_class_names_reach_the_outputs(tmp_path, folds, tiny_demo):
    """The export carries taxonomy.csv's names (model.json), and the command writes them."""
    recording = write_audio(tmp_path / "a.wav", tone(10.0, RATE), RATE)
    metadata = read_metadata(folds[0])
    params = audio_params(metadata)
    windows = np.stack(
        [window_features(w, params) for w in recording_windows(recording, params, 1)]
    )
    names = class_names(tiny_demo / "taxonomy.csv", metadata["classes"])
    assert len(names) == len(metadata["classes"])
    export = tmp_path / "export" / "model.tflite"
    card = export_tflite(folds[:1], export, windows.astype(np.float32), 1e-3, names=names)
    assert card["names"] == names
    out = tmp_path / "out"
    argv = ["predict", str(recording), "--models", str(export.parent), "--out", str(out)]
    options = ["--format", "raven,audacity", "--min-confidence", "0", "--engine", "tflite"]
    assert main([*argv, *options]) == 0
    raven = pd.read_csv(out / "a.wav.selections.txt", sep="\t")
    expected = raven["Species Code"].map(lambda code: names[code]["common"])
    assert raven["Common Name"].tolist() == expected.tolist()
    first = (out / "a.wav.labels.txt").read_text().splitlines()[0].split("\t")[2]
    code = raven["Species Code"].iloc[0]
    assert first.startswith(f"{code} ({names[code]['common']}) ")
