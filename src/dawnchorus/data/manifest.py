"""The manifest: which training recordings are usable, with what labels, in which shard.

Every train.csv row ends in exactly one of manifest.csv (usable) and rejected.csv (with a reason).
Labels are parsed here and only here (`parse_label_list`); later stages read the canonical
`secondary_labels` column this module writes.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd
from tqdm import tqdm

from dawnchorus.signal.audio import AudioError, probe_audio

TRAIN_AUDIO_DIR = "train_audio"
REQUIRED_TRAIN_COLUMNS = ("primary_label", "secondary_labels", "filename")
REQUIRED_TAXONOMY_COLUMNS = ("primary_label",)
# Columns this module adds; train.csv columns of the same name are kept with a "train_csv_" prefix.
ADDED_COLUMNS = (
    "source_row",
    "dropped_secondary_labels",
    "sample_rate",
    "channels",
    "duration_s",
    "format",
    "shard",
    "reason",
)

log = logging.getLogger(__name__)


class ManifestError(ValueError):
    """train.csv or taxonomy.csv cannot be used at all (as opposed to one bad row)."""


def parse_label_list(text: object) -> list[str]:
    """Parse a BirdCLEF label list ("['a', 'b']", "['']", "[]", or empty) into label strings.

    Uses ast.literal_eval, never eval. Raises ValueError for anything that is not a flat list of
    strings or integers (numeric iNaturalist ids appear as labels).
    """
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return []
    text = str(text).strip()
    if not text:
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"not a list literal: {text[:80]!r}") from None
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list, got a {type(value).__name__}: {text[:80]!r}")
    labels: list[str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ValueError(f"list item {item!r} is not a label: {text[:80]!r}")
        label = str(item).strip()
        if label and label not in labels:
            labels.append(label)
    return labels


def format_label_list(labels: Sequence[str]) -> str:
    """The canonical form written to manifest.csv; `parse_label_list` reads it back."""
    return repr([str(label) for label in labels])


def shard_for(filename: str, n_shards: int) -> int:
    """Stable shard of a recording: the same on every machine and Python run (unlike hash())."""
    digest = hashlib.blake2b(filename.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n_shards


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    if not path.is_file():
        raise ManifestError(f"{path} not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{path} is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path} is not a readable CSV file: {error}") from None
    table.columns = [str(column).strip() for column in table.columns]
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ManifestError(
            f"{path} lacks required column(s): {', '.join(missing)} "
            f"(found: {', '.join(table.columns)})"
        )
    if table.empty:
        raise ManifestError(f"{path} has a header but no rows")
    return table


def read_taxonomy(path: str | Path) -> list[str]:
    """Class labels in taxonomy.csv order (the column order of every prediction file)."""
    table = _read_csv(Path(path), REQUIRED_TAXONOMY_COLUMNS)
    classes = [label.strip() for label in table["primary_label"]]
    if "" in classes:
        raise ManifestError(
            f"{path}: primary_label is empty in row(s) "
            f"{[i for i, label in enumerate(classes) if not label]}"
        )
    repeated = sorted(label for label, count in Counter(classes).items() if count > 1)
    if repeated:
        raise ManifestError(f"{path}: duplicate primary_label(s): {', '.join(repeated)}")
    return classes


def read_train_csv(path: str | Path) -> pd.DataFrame:
    return _read_csv(Path(path), REQUIRED_TRAIN_COLUMNS)


def unsafe_path_reason(filename: str) -> str | None:
    """Why `filename` may not be used as a path below train_audio/ (None when it may)."""
    if PurePosixPath(filename).is_absolute() or PureWindowsPath(filename).is_absolute():
        return "absolute path"
    if PureWindowsPath(filename).drive:
        return "path with a drive letter"
    if ".." in PurePosixPath(filename.replace("\\", "/")).parts:
        return "path escapes train_audio/ ('..')"
    return None


def stratified_subsample(primary_labels: Sequence[str], max_samples: int, seed: int) -> np.ndarray:
    """Boolean mask choosing at most `max_samples` rows, keeping class proportions.

    Every class keeps at least one recording when there is room for all classes; the remaining room
    is shared in proportion to class size (largest remainders).
    """
    labels = np.asarray(primary_labels, dtype=object)
    keep = np.zeros(len(labels), dtype=bool)
    if len(labels) <= max_samples:
        keep[:] = True
        return keep
    classes, counts = np.unique(labels.astype(str), return_counts=True)
    rng = np.random.default_rng(seed)
    if len(classes) >= max_samples:
        quotas = np.zeros(len(classes), dtype=int)
        quotas[rng.permutation(len(classes))[:max_samples]] = 1
    else:
        quotas = np.ones(len(classes), dtype=int)
        spare = counts - 1
        room = max_samples - len(classes)
        shares = room * spare / spare.sum()
        quotas += np.floor(shares).astype(int)
        leftover = max_samples - quotas.sum()
        order = np.lexsort((classes, -(shares - np.floor(shares))))
        quotas[order[:leftover]] += 1
        quotas = np.minimum(quotas, counts)
    for label, quota in zip(classes, quotas, strict=True):
        rows = np.flatnonzero(labels.astype(str) == label)
        keep[rng.permutation(rows)[:quota]] = True
    return keep


@dataclass
class ManifestResult:
    manifest: pd.DataFrame
    rejected: pd.DataFrame
    classes: list[str]


def _label_checks(train: pd.DataFrame, known: set[str]) -> tuple[list[str | None], list, list]:
    """Per-row rejection reason (None = fine so far), kept secondary labels, dropped ones."""
    reasons: list[str | None] = []
    kept_secondary: list[list[str]] = []
    dropped_secondary: list[list[str]] = []
    first_row_of: dict[str, int] = {}
    for row, (filename, primary, secondary) in enumerate(
        zip(train["filename"], train["primary_label"], train["secondary_labels"], strict=True)
    ):
        filename, primary = filename.strip(), primary.strip()
        kept: list[str] = []
        dropped: list[str] = []
        reason = None
        if not filename:
            reason = "missing filename"
        elif unsafe := unsafe_path_reason(filename):
            reason = f"unsafe filename: {unsafe}"
        elif filename in first_row_of:
            reason = f"duplicate filename (first at train.csv row {first_row_of[filename]})"
        elif not primary:
            reason = "missing primary_label"
        elif primary not in known:
            reason = f"unknown primary_label '{primary}' (not in taxonomy.csv)"
        else:
            try:
                parsed = parse_label_list(secondary)
            except ValueError as error:
                reason = f"malformed secondary_labels: {error}"
            else:
                kept = [label for label in parsed if label in known and label != primary]
                dropped = [label for label in parsed if label not in known]
        if filename and filename not in first_row_of:
            first_row_of[filename] = row
        reasons.append(reason)
        kept_secondary.append(kept)
        dropped_secondary.append(dropped)
    return reasons, kept_secondary, dropped_secondary


def _probe_all(paths: Sequence[Path], workers: int, progress: bool) -> list[object]:
    def probe(path: Path):
        try:
            return probe_audio(path)
        except AudioError as error:
            return error

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(
            tqdm(
                pool.map(probe, paths),
                total=len(paths),
                desc="audio headers",
                disable=not progress,
                mininterval=10,
            )
        )


def _count_unlisted_audio(audio_root: Path, listed: Iterable[str]) -> int:
    if not audio_root.is_dir():
        return 0
    listed = set(listed)
    on_disk = {
        path.relative_to(audio_root).as_posix() for path in audio_root.rglob("*") if path.is_file()
    }
    return len(on_disk - listed)


def build_manifest(
    data_dir: str | Path,
    sample_rate: int,
    n_fft: int,
    n_shards: int,
    seed: int,
    max_samples: int | None = None,
    workers: int = 4,
    progress: bool = False,
) -> ManifestResult:
    """Validate train.csv and taxonomy.csv and every listed audio file's header.

    Recordings shorter than one FFT window (n_fft samples at `sample_rate`) are rejected.

    With `max_samples` (debug mode) the usable rows are subsampled, stratified by primary label,
    before audio is probed; rows left out are recorded in rejected.csv like any other.
    """
    data_dir = Path(data_dir)
    classes = read_taxonomy(data_dir / "taxonomy.csv")
    train = read_train_csv(data_dir / "train.csv")
    reasons, kept_secondary, dropped_secondary = _label_checks(train, set(classes))
    filenames = [name.strip() for name in train["filename"]]
    primaries = [label.strip() for label in train["primary_label"]]

    candidates = [row for row, reason in enumerate(reasons) if reason is None]
    if max_samples is not None and len(candidates) > max_samples:
        chosen = stratified_subsample([primaries[row] for row in candidates], max_samples, seed)
        for row, keep in zip(candidates, chosen, strict=True):
            if not keep:
                reasons[row] = (
                    f"not selected by debug subsampling (debug.max_samples={max_samples})"
                )
        candidates = [row for row, keep in zip(candidates, chosen, strict=True) if keep]
        log.info(
            "debug mode: kept %d of the usable rows, stratified by primary label", len(candidates)
        )

    audio_root = data_dir / TRAIN_AUDIO_DIR
    infos = _probe_all([audio_root / filenames[row] for row in candidates], workers, progress)
    audio_columns: dict[int, tuple] = {}
    for row, info in zip(candidates, infos, strict=True):
        if isinstance(info, AudioError):
            reasons[row] = str(info)
            continue
        if info.frames * sample_rate / info.sample_rate < n_fft:
            reasons[row] = (
                f"shorter than one FFT window ({info.duration_s * 1000:.1f} ms; "
                f"audio.n_fft is {n_fft / sample_rate * 1000:.1f} ms)"
            )
            continue
        audio_columns[row] = (
            info.sample_rate,
            info.channels,
            round(info.duration_s, 4),
            info.format,
        )

    original = train.rename(
        columns={
            column: f"train_csv_{column}" for column in train.columns if column in ADDED_COLUMNS
        }
    )
    original["filename"] = filenames
    original["primary_label"] = primaries
    accepted_rows = sorted(audio_columns)
    manifest = original.iloc[accepted_rows].copy()
    manifest.insert(0, "source_row", accepted_rows)
    manifest["secondary_labels"] = [format_label_list(kept_secondary[row]) for row in accepted_rows]
    manifest.insert(
        manifest.columns.get_loc("secondary_labels") + 1,
        "dropped_secondary_labels",
        [format_label_list(dropped_secondary[row]) for row in accepted_rows],
    )
    for position, column in enumerate(("sample_rate", "channels", "duration_s", "format")):
        manifest[column] = [audio_columns[row][position] for row in accepted_rows]
    manifest["shard"] = [shard_for(filenames[row], n_shards) for row in accepted_rows]

    rejected_rows = [row for row, reason in enumerate(reasons) if reason is not None]
    rejected = original.iloc[rejected_rows].copy()
    rejected.insert(0, "source_row", rejected_rows)
    rejected.insert(1, "reason", [reasons[row] for row in rejected_rows])

    if len(manifest) + len(rejected) != len(train):
        raise AssertionError("manifest invariant broken: a train.csv row is in neither output")
    _log_summary(train, manifest, rejected, dropped_secondary, classes)
    unlisted = _count_unlisted_audio(audio_root, filenames)
    if unlisted:
        log.info(
            "%d audio file(s) under %s are not listed in train.csv (ignored)", unlisted, audio_root
        )
    return ManifestResult(manifest.reset_index(drop=True), rejected.reset_index(drop=True), classes)


def _log_summary(train, manifest, rejected, dropped_secondary, classes) -> None:
    log.info(
        "train.csv: %d rows -> %d in the manifest, %d rejected",
        len(train),
        len(manifest),
        len(rejected),
    )
    kinds = Counter(reason.split(":")[0].split(" (")[0] for reason in rejected["reason"])
    for kind, count in kinds.most_common():
        log.info("  rejected %5d  %s", count, kind)
    dropped = Counter(label for labels in dropped_secondary for label in labels)
    if dropped:
        log.warning(
            "secondary labels not in taxonomy.csv were dropped (rows kept): %s",
            dict(dropped.most_common(20)),
        )
    unused = sorted(set(classes) - set(manifest["primary_label"]))
    if unused:
        log.warning(
            "%d taxonomy class(es) have no usable primary recording: %s",
            len(unused),
            ", ".join(unused[:50]),
        )


def write_manifest(
    result: ManifestResult,
    manifest_csv: str | Path,
    rejected_csv: str | Path,
    classes_txt: str | Path,
) -> None:
    for path in (manifest_csv, rejected_csv, classes_txt):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    result.manifest.to_csv(manifest_csv, index=False, lineterminator="\n")
    result.rejected.to_csv(rejected_csv, index=False, lineterminator="\n")
    Path(classes_txt).write_text(
        "".join(f"{label}\n" for label in result.classes), encoding="utf-8"
    )


def read_manifest(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"filename": str, "primary_label": str}, keep_default_na=False)


def read_classes(path: str | Path) -> list[str]:
    return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line]


def class_names(taxonomy_csv: str | Path, classes: Sequence[str]) -> dict[str, dict[str, str]]:
    """{code: {"common": …, "scientific": …}} of `classes` from taxonomy.csv (the names a person
    reads in the outputs); a code without a row, or a taxonomy without the columns, has none."""
    taxonomy = pd.read_csv(taxonomy_csv, dtype=str, keep_default_na=False)
    columns = {"common": "common_name", "scientific": "scientific_name"}
    if not set(columns.values()) <= set(taxonomy.columns):
        return {}
    rows = taxonomy.drop_duplicates("primary_label").set_index("primary_label")
    wanted = [code for code in classes if code in rows.index]
    return {
        code: {name: str(rows.at[code, column]) for name, column in columns.items()}
        for code in wanted
    }


def label_matrix(manifest: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """Multi-hot targets (rows × classes, uint8) from primary and secondary labels."""
    index = {label: position for position, label in enumerate(classes)}
    matrix = np.zeros((len(manifest), len(classes)), dtype=np.uint8)
    for row, (primary, secondary) in enumerate(
        zip(manifest["primary_label"], manifest["secondary_labels"], strict=True)
    ):
        for label in [str(primary), *parse_label_list(secondary)]:
            matrix[row, index[label]] = 1
    return matrix
