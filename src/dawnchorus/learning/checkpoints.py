"""A fold's work folder: what lets a killed training job resume where it stopped.

Work in progress lives in `<fold dir>/work/` (Snakemake deletes a job's declared outputs before
rerunning it, so resumable state must not be one of them):
  backup/         Keras BackupAndRestore: weights, optimizer state and epoch, saved every epoch
  best-epoch-NNN.weights.h5  the best weights so far by val_auc (NNN: its epoch, from 1)
  history.csv     one row per finished epoch (appended across restarts)
  state.json      fingerprint of the run's settings, elapsed seconds, whether fit finished
A job killed at any point and rerun continues from the last epoch the backup holds; an epoch
killed after it was logged or checkpointed but before it was backed up is trained again, and its
history row and checkpoint are dropped first. A rerun with other settings (a different
fingerprint) starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from dawnchorus.artifacts import read_json_or_empty, write_json

log = logging.getLogger(__name__)


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_work_dir(work: Path, run_fingerprint: str) -> dict:
    """Keep a previous attempt's state only if it was made with the same settings."""
    state = read_json_or_empty(work / "state.json")
    finished_but_lost = state.get("fit_done") and not best_checkpoints(work)
    if work.exists() and (state.get("fingerprint") != run_fingerprint or finished_but_lost):
        log.warning("discarding %s: it was made with other settings or is incomplete", work)
        shutil.rmtree(work)
        state = {}
    work.mkdir(parents=True, exist_ok=True)
    if not state:
        state = {"fingerprint": run_fingerprint, "elapsed_s": 0.0, "fit_done": False}
        write_json(work / "state.json", state)
    return state


def best_checkpoints(work: Path) -> list[Path]:
    """The best-so-far checkpoints, oldest first (each one better than the one before)."""
    return sorted(work.glob("best-epoch-*.weights.h5"))


def checkpoint_epoch(path: Path) -> int:
    return int(path.name.split(".")[0].removeprefix("best-epoch-"))


def epochs_backed_up(backup_dir: Path) -> int:
    """Epochs BackupAndRestore holds (0 if none): where a resumed fit starts."""
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        try:
            return int(json.loads((backup_dir / name).read_text())["epoch"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            continue
    return 0


def drop_unfinished_epochs(work: Path, epochs_done: int) -> pd.DataFrame:
    """Forget what an epoch the backup does not hold left behind; return the history kept."""
    history = read_history(work / "history.csv")
    if len(history) and (history["epoch"] >= epochs_done).any():
        log.warning(
            "epoch(s) %s were logged but not backed up before the job died: training them again",
            ", ".join(str(int(e) + 1) for e in history["epoch"][history["epoch"] >= epochs_done]),
        )
        history = history[history["epoch"] < epochs_done]
        history.to_csv(work / "history.csv", index=False, lineterminator="\n")
    for checkpoint in best_checkpoints(work):
        if checkpoint_epoch(checkpoint) > epochs_done:
            checkpoint.unlink()
    return history


def read_history(path: Path) -> pd.DataFrame:
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["epoch"])
    return pd.read_csv(path)
