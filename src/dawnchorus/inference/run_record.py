"""What made a prediction folder, so that a rerun into it never mixes two models' or two
settings' outputs and never keeps the outputs of a recording that changed since.

- `run.json`: the model (each file it was loaded from, with its sha256, and what predicts), the
  settings that change what is written (post-processing, filters, formats) under the option
  names a user types, and the version that wrote it. Written when a run starts in a new folder.
- `recordings.csv`: one row per recording finished (its path, size and modification time when
  it was read, the outcome, windows and seconds decoded, the problem, the files written),
  appended as each finishes. A rerun skips a recording only when its row says it is unchanged
  and its outputs are there (or it failed with no window: the same file fails the same way).

A rerun whose model or settings differ from `run.json` stops before predicting anything and
names each difference (`RunMismatch`); to start over, the outputs the folder's records list are
deleted first (`archive.start_over`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dawnchorus import __version__
from dawnchorus.artifacts import file_sha256, write_json

RUN_RECORD = "run.json"
LEDGER = "recordings.csv"
LEDGER_COLUMNS = (
    "path",
    "bytes",
    "mtime_ns",
    "outcome",
    "windows",
    "decoded_s",
    "problem",
    "outputs",  # a JSON list of the files written, relative to the folder
)
PREDICTED, PARTIAL, FAILED = "predicted", "partial", "failed"  # a recording's outcome
FORMAT_VERSION = 1


class RunMismatch(ValueError):
    """The output folder holds another model's or other settings' predictions."""


def model_record(files: Iterable[str | Path], predicts: str) -> dict:
    """The model part of a run record: what predicts and each file's name and sha256."""
    return {
        "predicts": predicts,
        "files": [{"file": str(Path(f).resolve()), "sha256": file_sha256(f)} for f in files],
    }


def run_record(model: Mapping, settings: Mapping) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "written_by": f"dawnchorus {__version__}",
        "model": dict(model),
        "settings": dict(settings),
    }


def read_run_record(out_dir: str | Path) -> dict | None:
    path = Path(out_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}  # unreadable: differs from any run


def differences(earlier: Mapping, now: Mapping) -> list[str]:
    """What differs between an earlier run's record and this run's, one line each, in words
    a user acts on (option names, file names, the first 12 hex digits of a checksum)."""
    if earlier.get("format_version") != FORMAT_VERSION:
        return [f"{RUN_RECORD} is missing parts or from another version of dawnchorus"]
    lines = []
    if earlier["model"]["predicts"] != now["model"]["predicts"]:
        lines.append(
            f"what predicts: {earlier['model']['predicts']} (earlier) -> "
            f"{now['model']['predicts']} (now)"
        )
    before = _checksums(earlier["model"]["files"])
    after = _checksums(now["model"]["files"])
    if sorted(before.values()) != sorted(after.values()):
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                lines.append(
                    f"model file {name}: {_short_sum(before.get(name))} (earlier) -> "
                    f"{_short_sum(after.get(name))} (now)"
                )
    old_settings, new_settings = earlier["settings"], now["settings"]
    for option in sorted(set(old_settings) | set(new_settings)):
        if old_settings.get(option) != new_settings.get(option):
            lines.append(
                f"{option}: {_shown(old_settings.get(option))} (earlier) -> "
                f"{_shown(new_settings.get(option))} (now)"
            )
    return lines


def _checksums(files: Sequence[Mapping]) -> dict[str, str]:
    """{file name: sha256}; a name used twice (fold_0/model.keras, fold_1/…) keeps its folder."""
    names = [Path(entry["file"]).name for entry in files]
    return {
        (Path(entry["file"]).name if names.count(name) == 1 else _two_parts(entry["file"])): entry[
            "sha256"
        ]
        for entry, name in zip(files, names, strict=True)
    }


def _two_parts(path: str) -> str:
    return "/".join(Path(path).parts[-2:])


def _short_sum(sha256: str | None) -> str:
    return "absent" if sha256 is None else f"sha256 {sha256[:12]}"


def _shown(value) -> str:
    if value is None:
        return "not given"
    if isinstance(value, list):
        return ",".join(map(str, value)) if len(value) <= 8 else f"{len(value)} values"
    return str(value)


@dataclass(frozen=True)
class Stamp:
    """A recording as it was when read: a rerun redoes it when either differs."""

    bytes: int
    mtime_ns: int


def stamp(path: str | Path) -> Stamp | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return Stamp(status.st_size, status.st_mtime_ns)


def ledger_key(path: str | Path) -> str:
    """The ledger's name of a recording: its absolute path, whatever folder a run started in."""
    return str(Path(path).resolve())


@dataclass(frozen=True)
class LedgerRow:
    stamp: Stamp
    outcome: str
    windows: int
    decoded_s: float
    problem: str
    outputs: tuple[str, ...]  # the files written, relative to the folder


def read_ledger(out_dir: str | Path) -> dict[str, LedgerRow]:
    """{recording's absolute path: its last row}; a row a killed run left half-written (or
    any row that does not parse) is ignored: that recording is predicted again."""
    path = Path(out_dir) / LEDGER
    rows: dict[str, LedgerRow] = {}
    if not path.is_file():
        return rows
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                rows[row["path"]] = LedgerRow(
                    Stamp(int(row["bytes"]), int(row["mtime_ns"])),
                    row["outcome"],
                    int(row["windows"]),
                    float(row["decoded_s"] or "nan"),
                    row["problem"] or "",
                    tuple(json.loads(row["outputs"])),
                )
            except (KeyError, TypeError, ValueError):  # (json's errors are ValueErrors)
                continue
    return rows


def append_ledger(
    out_dir: str | Path,
    recording: str | Path,
    read_as: Stamp | None,
    outcome: str,
    windows: int,
    decoded_s: float | None,
    problem: str | None,
    outputs: Sequence[str] = (),
) -> None:
    """One finished recording's row, on disk before the next recording is counted."""
    path = Path(out_dir) / LEDGER
    new = not path.is_file() or path.stat().st_size == 0
    read_as = read_as or Stamp(-1, -1)
    with open(path, "a", newline="", encoding="utf-8") as handle:
        if not new and not _ends_with_newline(path):
            handle.write("\n")  # a row a killed run left half-written stays a row of its own
        writer = csv.writer(handle, lineterminator="\n")
        if new:
            writer.writerow(LEDGER_COLUMNS)
        decoded = "" if decoded_s is None else f"{decoded_s:.3f}"
        writer.writerow(
            [
                ledger_key(recording),
                read_as.bytes,
                read_as.mtime_ns,
                outcome,
                windows,
                decoded,
                problem or "",
                json.dumps(list(outputs)),
            ]
        )
        handle.flush()
        os.fsync(handle.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def start_run(out_dir: str | Path, record: Mapping, has_outputs: bool) -> None:
    """Check `record` against the folder's, and write it when the folder has none.
    RunMismatch naming each difference when they differ, or when the recordings have outputs
    there (`has_outputs`) without a record."""
    out_dir = Path(out_dir)
    earlier = read_run_record(out_dir)
    if earlier is None:
        found = has_outputs or (out_dir / LEDGER).is_file()
        problems = [f"its outputs have no record of what made them ({RUN_RECORD})"] if found else []
    else:
        problems = differences(earlier, record)
    if problems:
        raise RunMismatch(
            f"{out_dir} holds predictions made otherwise:\n  "
            + "\n  ".join(problems)
            + "\nnothing was predicted: give another --out, or --overwrite to predict every "
            "recording again (the folder's earlier outputs are deleted)"
        )
    if earlier is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / RUN_RECORD, record)
