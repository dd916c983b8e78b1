"""The files `dawnchorus predict` writes per recording, in the formats bioacousticians open:

- `csv`: the window probabilities, wide (one column per species) or long (one row per window
  and kept species: filename, start_s, end_s, rank, label, probability);
- `raven`: a Raven Pro selection table (tab-separated, one selection per detection);
- `audacity`: an Audacity label track (File > Import > Labels), one label per detection.

File names: a recording's path relative to the input folder it was found in is mirrored under
the output folder, and the format's suffix is appended to the whole file name, audio suffix
included: `site1/a.ogg` -> `out/site1/a.ogg.csv`, `out/site1/a.ogg.selections.txt`,
`out/site1/a.ogg.labels.txt`. Two recordings of one folder have different names, so their
outputs never collide (`a.ogg` and `a.wav` would both become `a.csv` had the suffix been
replaced, as BirdNET-Analyzer's `a.BirdNET.selection.table.txt` does).

Each file is written to `.NAME.part` beside it and renamed into place, so an output that exists
is whole: a resumed run skips the recordings whose outputs all exist (`is_complete`) and deletes
the `.part` files a killed run left (`remove_partial`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from dawnchorus.inference.recordings import FilePrediction

FORMATS = ("csv", "raven", "audacity")
SUFFIXES = {"csv": ".csv", "raven": ".selections.txt", "audacity": ".labels.txt"}
# BirdNET-Analyzer's default --min_conf: what the label formats keep when no filter is given
DEFAULT_MIN_CONFIDENCE = 0.1
_PART = ".part"
_LISTED_AT_MOST = 10  # unknown species codes named in an error; more would hide the message
_RAVEN_VIEW = "Spectrogram 1"


@dataclass(frozen=True)
class DetectionFilter:
    """Which (window, species) pairs become detections: those of the `species` kept (all when
    None), among them the `top_k` most probable of each window, of those the ones with a
    probability of at least `min_confidence`."""

    min_confidence: float | None = None
    top_k: int | None = None
    species: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top-k must be at least 1, not {self.top_k}")
        if self.min_confidence is not None and not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min confidence must be between 0 and 1, not {self.min_confidence}")
        if self.species is not None and not self.species:
            raise ValueError("the species list is empty: it would keep nothing (None keeps all)")

    @property
    def is_selective(self) -> bool:
        """Whether it keeps only some species of each window (else every kept species of
        every window, which is the wide table, not a list of detections)."""
        return self.min_confidence is not None or self.top_k is not None


def read_species_list(path: str | Path, classes: Sequence[str]) -> tuple[str, ...]:
    """The class codes listed in `path` (one a line; blank lines and `#` comments ignored), in
    the model's class order. ValueError for a file that cannot be read, lists nothing, or
    lists a code the model does not know (a typo would otherwise silently drop a species)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read species list '{path}': {error.strerror or error}") from None
    listed = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    listed = [code for code in listed if code]
    if not listed:
        raise ValueError(f"species list '{path}' lists no species")
    if unknown := _unknown_codes(listed, classes):
        raise ValueError(f"species list '{path}': {unknown} not among the model's classes")
    wanted = set(listed)
    return tuple(code for code in classes if code in wanted)


def _unknown_codes(codes: Iterable[str], classes: Sequence[str]) -> str:
    """The codes not in `classes`, quoted and comma-separated (at most _LISTED_AT_MOST named);
    '' when all are known."""
    known = set(classes)
    unknown = list(dict.fromkeys(code for code in codes if code not in known))
    named = ", ".join(f"'{code}'" for code in unknown[:_LISTED_AT_MOST])
    more = len(unknown) - _LISTED_AT_MOST
    return named + (f" and {more} more" if more > 0 else "")


def _kept_columns(
    probabilities: np.ndarray, classes: Sequence[str], species: Sequence[str] | None
) -> np.ndarray:
    """Indices of the kept species' columns, in the model's class order."""
    if probabilities.shape[1] != len(classes):
        raise ValueError(f"{probabilities.shape[1]} probability columns for {len(classes)} classes")
    if species is None:
        return np.arange(len(classes))
    if unknown := _unknown_codes(species, classes):
        raise ValueError(f"species {unknown} not among the model's classes")
    wanted = set(species)
    return np.array([i for i, code in enumerate(classes) if code in wanted], dtype=np.intp)


def _window_keys(prediction: FilePrediction, window_s: float) -> pd.DataFrame:
    """filename, start_s, end_s of each window of the recording, the last one ending where
    the recording does (a last window filled from a shorter tail is that tail)."""
    ends = np.asarray(prediction.end_s, dtype=np.float64)
    starts = np.round(ends - window_s, 3)
    if prediction.duration_s is not None:
        ends = np.minimum(ends, prediction.duration_s)
    return pd.DataFrame({"filename": str(prediction.path), "start_s": starts, "end_s": ends})


def window_probabilities(
    prediction: FilePrediction,
    classes: Sequence[str],
    window_s: float,
    species: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Wide: one row per window (filename, start_s, end_s), one column per kept species."""
    columns = _kept_columns(prediction.probabilities, classes, species)
    names = [classes[i] for i in columns]
    probabilities = pd.DataFrame(prediction.probabilities[:, columns], columns=names)
    return pd.concat([_window_keys(prediction, window_s), probabilities], axis=1)


def detections(
    prediction: FilePrediction,
    classes: Sequence[str],
    window_s: float,
    keep: DetectionFilter,
    names: Mapping[str, Mapping[str, str]] | None = None,
) -> pd.DataFrame:
    """Long: one row per window and kept species (filename, start_s, end_s, rank, label,
    probability; with `names`, {code: {"common": …}}, common_name after label), each window's
    most probable first; `rank` counts among the kept species, so a species filter with top-k
    keeps the k most probable of the listed species."""
    columns = _kept_columns(prediction.probabilities, classes, keep.species)
    probabilities = prediction.probabilities[:, columns]
    order = np.argsort(-probabilities, axis=1, kind="stable")
    if keep.top_k is not None:
        order = order[:, : keep.top_k]
    window_index = np.repeat(np.arange(len(order)), order.shape[1])
    kept_index = order.reshape(-1)
    scores = probabilities[window_index, kept_index]
    rank = np.tile(np.arange(1, order.shape[1] + 1), len(order))
    if keep.min_confidence is None:
        passes = np.ones(len(scores), dtype=bool)
    else:
        passes = scores >= keep.min_confidence
    long = _window_keys(prediction, window_s).iloc[window_index[passes]].reset_index(drop=True)
    long["rank"] = rank[passes]
    long["label"] = np.asarray(classes, dtype=object)[columns[kept_index[passes]]]
    if names:
        long["common_name"] = [names.get(code, {}).get("common", "") for code in long["label"]]
    long["probability"] = scores[passes]
    return long


def _csv_rows(
    prediction: FilePrediction,
    classes: Sequence[str],
    window_s: float,
    keep: DetectionFilter,
    long: pd.DataFrame | None,
) -> pd.DataFrame:
    """The CSV's rows: the long detections (`long` when already found) for a selective filter,
    else every kept species' probability in every window."""
    if not keep.is_selective:
        return window_probabilities(prediction, classes, window_s, keep.species)
    return long if long is not None else detections(prediction, classes, window_s, keep)


def raven_table(long_rows: pd.DataFrame, low_hz: float, high_hz: float) -> pd.DataFrame:
    """Raven Pro's selection table of the detections (`detections`' rows), one selection each:
    Selection (1..n), View, Channel, Begin Time (s), End Time (s), Low Freq (Hz),
    High Freq (Hz), the columns Raven requires, then Species Code and Confidence. A selection
    spans its window and the band the model hears (`low_hz`..`high_hz`, audio.fmin..fmax)."""
    if not 0 <= low_hz < high_hz:
        raise ValueError(f"the band must satisfy 0 <= low < high Hz, not {low_hz}..{high_hz}")
    n = len(long_rows)
    # BirdNET-Analyzer's order: Common Name, Species Code, Confidence (a name when known)
    common = {"Common Name": long_rows["common_name"]} if "common_name" in long_rows else {}
    return pd.DataFrame(
        {
            "Selection": np.arange(1, n + 1),
            "View": np.full(n, _RAVEN_VIEW, dtype=object),
            "Channel": np.ones(n, dtype=int),
            "Begin Time (s)": long_rows["start_s"].to_numpy(dtype=np.float64),
            "End Time (s)": long_rows["end_s"].to_numpy(dtype=np.float64),
            "Low Freq (Hz)": np.full(n, float(low_hz)),
            "High Freq (Hz)": np.full(n, float(high_hz)),
            **{column: values.to_numpy(dtype=object) for column, values in common.items()},
            "Species Code": long_rows["label"].to_numpy(dtype=object),
            "Confidence": long_rows["probability"].to_numpy(dtype=np.float64),
        }
    )


def audacity_labels(long_rows: pd.DataFrame) -> str:
    """Audacity's label-track text: one `start<TAB>end<TAB>label (Common Name) confidence` line
    per detection (the name when known; seconds with 6 decimals, confidence with 4), no
    header."""
    named = long_rows.get("common_name", pd.Series([""] * len(long_rows), dtype=object))
    return "".join(
        f"{start:.6f}\t{end:.6f}\t{label}{f' ({name})' if name else ''} {probability:.4f}\n"
        for start, end, label, name, probability in zip(
            long_rows["start_s"],
            long_rows["end_s"],
            long_rows["label"],
            named,
            long_rows["probability"],
            strict=True,
        )
    )


def _check_formats(formats: Iterable[str]) -> None:
    if unknown := sorted(set(formats) - set(FORMATS)):
        raise ValueError(f"unknown output format(s) {unknown}; known: {', '.join(FORMATS)}")


def output_paths(
    recording: str | Path,
    input_root: str | Path | None,
    out_dir: str | Path,
    formats: Sequence[str],
) -> dict[str, Path]:
    """Where each format's file of `recording` goes: its path relative to `input_root` (the
    folder it was found in; None for a recording given as a file: its name alone) under
    `out_dir`, the format's suffix appended to the whole name (`site1/a.ogg` ->
    `out_dir/site1/a.ogg.selections.txt`)."""
    _check_formats(formats)
    recording = Path(recording)
    if input_root is None:
        relative = Path(recording.name)
    elif recording.is_relative_to(input_root):
        relative = recording.relative_to(input_root)
    else:
        raise ValueError(f"'{recording}' is not under the input folder '{input_root}'")
    folder = Path(out_dir) / relative.parent
    return {kind: folder / (relative.name + SUFFIXES[kind]) for kind in formats}


def plan_outputs(
    recordings: Iterable[tuple[str | Path, str | Path | None]],
    out_dir: str | Path,
    formats: Sequence[str],
) -> dict[Path, dict[str, Path]]:
    """`output_paths` of each (recording, input_root); ValueError when two recordings would
    write the same file (same relative path under two input folders, or one name given as
    files from two folders), before any prediction is spent on them."""
    plan: dict[Path, dict[str, Path]] = {}
    writer_of: dict[Path, Path] = {}
    for recording, input_root in recordings:
        paths = output_paths(recording, input_root, out_dir, formats)
        for path in paths.values():
            if (other := writer_of.setdefault(path, Path(recording))) != Path(recording):
                raise ValueError(f"'{other}' and '{recording}' would both write '{path}'")
        plan[Path(recording)] = paths
    return plan


def _part_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{_PART}")


def write_outputs(
    prediction: FilePrediction,
    classes: Sequence[str],
    window_s: float,
    keep: DetectionFilter,
    paths: Mapping[str, Path],
    low_hz: float,
    high_hz: float,
    names: Mapping[str, Mapping[str, str]] | None = None,
) -> int:
    """Write the recording's files `paths` ({format: path}, `output_paths`), each complete or
    not at all; the number of detections written (the long rows; a wide CSV alone: its windows).

    The CSV is wide (the kept species' columns) when `keep` has neither min confidence nor
    top-k, else long. Raven and Audacity list detections, so without either they use
    DEFAULT_MIN_CONFIDENCE (BirdNET-Analyzer's default) instead of listing every species of
    every window. A recording that failed part-way (`prediction.error`) has the windows before
    its problem written. `names` ({code: {"common": …}}, an export's model.json): a Common Name
    column in Raven and the long CSV, the name beside the code in Audacity labels.
    """
    _check_formats(paths)
    label_keep = keep if keep.is_selective else replace(keep, min_confidence=DEFAULT_MIN_CONFIDENCE)
    needs_long = keep.is_selective or any(kind != "csv" for kind in paths)
    long = detections(prediction, classes, window_s, label_keep, names) if needs_long else None

    def prepared(kind: str) -> Callable[[Path], object]:
        """A writer of the format's file, its content already made."""
        if kind == "csv":
            # no float format: times are whole milliseconds and float32 probabilities print in
            # their shortest exact form, where "%.6g" would cut 1001.667 s to 1001.67
            table = _csv_rows(prediction, classes, window_s, keep, long)
            return partial(table.to_csv, index=False, lineterminator="\n")
        if kind == "raven":
            # times are whole milliseconds; 4 decimals are BirdNET-Analyzer's confidence
            table = raven_table(long, low_hz, high_hz)
            return partial(
                table.to_csv, sep="\t", index=False, float_format="%.4f", lineterminator="\n"
            )
        text = audacity_labels(long)
        return lambda target: target.write_text(text, encoding="utf-8")

    # every file's content is made before any is written: a bad band fails with nothing written
    write_each = {Path(path): prepared(kind) for kind, path in paths.items()}
    written: list[Path] = []
    try:
        for path, write in write_each.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            written.append(_part_path(path))
            write(written[-1])
    except BaseException:
        for part in written:
            part.unlink(missing_ok=True)
        raise
    for path in write_each:
        os.replace(_part_path(path), path)
    if long is not None:
        return len(long)
    return len(prediction.end_s)


def is_complete(paths: Mapping[str, Path]) -> bool:
    """Whether every requested output of a recording exists (a killed run leaves only `.part`
    files, which do not count): a resumed run skips it."""
    return all(Path(path).is_file() for path in paths.values())


def remove_partial(out_dir: str | Path) -> list[Path]:
    """Delete the `.NAME.part` files a killed run left under `out_dir`; those deleted. Only
    files named like our outputs' partials are touched."""
    ours = tuple(suffix + _PART for suffix in SUFFIXES.values())
    removed = []
    for path in Path(out_dir).rglob(f".*{_PART}"):
        if path.name.endswith(ours) and path.is_file():
            path.unlink()
            removed.append(path)
    return sorted(removed)


COMBINED = "combined"  # FOLDER/combined.csv, FOLDER/combined.selections.txt


def combine_outputs(
    jobs: Iterable, out_dir: Path, formats: Sequence[str], durations: Mapping[Path, float]
) -> list[Path]:
    """One table per format of every recording's file (jobs: with `.recording` and `.outputs`,
    in the order to list them; `durations`: each recording's seconds decoded): the CSVs with the
    filename column they have; the Raven tables as Raven's multi-file table (and
    BirdNET-Analyzer's combined one): the recordings laid end to end in the order listed, Begin
    and End Time on that timeline (each recording starts where the ones before it end), Begin
    Path the recording's absolute path, File Offset (s) the selection's start within it, the
    selections numbered 1..n. Opened with the recordings as one sequence, Raven shows each
    selection where it is. Audacity labels belong to one recording's track, so they are not
    combined. The files written."""
    written = []
    for kind in ("csv", "raven"):
        if kind not in formats:
            continue
        tables = []
        offset = 0.0
        for job in jobs:
            table = pd.read_csv(job.outputs[kind], sep="\t" if kind == "raven" else ",")
            if kind == "raven":
                table["Begin Path"] = str(Path(job.recording).resolve())
                table["File Offset (s)"] = table["Begin Time (s)"]
                table["Begin Time (s)"] += offset
                table["End Time (s)"] += offset
                offset += durations[Path(job.recording)]
            tables.append(table)
        combined = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
        target = out_dir / (COMBINED + SUFFIXES[kind])
        if kind == "raven":
            combined["Selection"] = np.arange(1, len(combined) + 1)
            write = partial(combined.to_csv, sep="\t", float_format="%.4f")
        else:
            write = combined.to_csv
        write(_part_path(target), index=False, lineterminator="\n")
        os.replace(_part_path(target), target)
        written.append(target)
    return written
