"""`dawnchorus predict` over an archive: files in parallel processes, killed half way and started
again, every recording predicted once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from support import save_fold_model, taxonomy_classes, tone, write_audio

from dawnchorus.config import AudioParams, section_defaults
from dawnchorus.inference.export import export_tflite
from dawnchorus.inference.recordings import recording_windows, window_features
from dawnchorus.inference.run_record import read_ledger

pytestmark = pytest.mark.training
PARAMS = AudioParams.from_config(section_defaults("audio"))
N_FILES = 1000


@pytest.fixture(scope="module")
def export(tmp_path_factory, tiny_demo):
    root = tmp_path_factory.mktemp("archive_export")
    classes = taxonomy_classes(tiny_demo)
    fold = save_fold_model(root / "fold_0.keras", classes, seed=0)
    soundscape = sorted((tiny_demo / "test_soundscapes").glob("*.ogg"))[0]
    windows = np.stack(
        [window_features(w, PARAMS) for w in recording_windows(soundscape, PARAMS, 1)]
    )
    export_tflite([fold], root / "export" / "model.tflite", windows, tolerance=1e-3)
    return root / "export"


def predict_command(archive, export, out, workers=2) -> list[str]:
    return [
        sys.executable, "-m", "dawnchorus.cli", "predict", str(archive), "--models", str(export),
        "--out", str(out), "--workers", str(workers), "--threads", str(workers),
        "--format", "csv,raven,audacity",
    ]  # fmt: skip


def outputs_of(out, suffix):
    """The recordings' files of one format (not problems.csv)."""
    return {path for path in out.rglob(f"*{suffix}") if path.parent != out}


def test_a_killed_run_started_again_predicts_every_file_once(tmp_path, export):
    archive = tmp_path / "archive"
    for i in range(N_FILES):  # short files (2 s: one window each), in folders of a hundred
        write_audio(
            archive / f"site{i // 100}" / f"r{i:04d}.wav", tone(2.0, 16000, freq=500.0 + i), 16000
        )
    (archive / "site0" / "broken.wav").write_bytes(b"RIFF not really")
    out = tmp_path / "out"
    command = predict_command(archive, export, out)
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while len(outputs_of(out, ".selections.txt")) < N_FILES // 3:
        assert run.poll() is None, run.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the first run made no progress"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # the run and its workers, as a cluster job is killed
    run.wait()
    # finished: the recordings recordings.csv lists (their outputs were all in place first)
    finished = read_ledger(out)
    complete = {
        path: path.stat().st_mtime_ns
        for path in outputs_of(out, ".csv")
        if str(archive / path.relative_to(out).with_suffix("")) in finished
    }
    assert N_FILES // 3 <= len(finished) < N_FILES, "killed half way"
    broken_done = str(archive / "site0" / "broken.wav") in finished
    assert len(complete) == len(finished) - broken_done

    resumed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert resumed.returncode == 1, "broken.wav is a problem"
    assert f"{len(finished)} recording(s) skipped" in resumed.stderr
    predicted = N_FILES - len(complete)
    assert f"{predicted} recording(s) predicted (" in resumed.stderr
    assert ("1 recording(s) failed" in resumed.stderr) != broken_done
    assert not list(out.rglob("*.part")), "the killed run's half-written files are gone"
    for suffix in (".csv", ".selections.txt", ".labels.txt"):
        assert len(outputs_of(out, suffix)) == N_FILES, "none for broken.wav"
    # what the first run finished was not predicted again
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in complete.items())
    # every file has its one window, once
    tables = [pd.read_csv(path) for path in sorted(outputs_of(out, ".csv"))]
    rows = pd.concat(tables)
    assert len(rows) == N_FILES and rows["filename"].is_unique
    problems = pd.read_csv(out / "problems.csv")
    assert problems["path"].tolist() == [str(archive / "site0" / "broken.wav")]
    assert len(read_ledger(out)) == N_FILES + 1
