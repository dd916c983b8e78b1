"""Rules spectrograms and spectrogram_index: each shard built from the manifest rows assigned to it,
and one index of where every manifest recording went (stored, or quarantined with its reason)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from dawnchorus.config import AudioParams
from dawnchorus.data.manifest import TRAIN_AUDIO_DIR, read_manifest
from dawnchorus.data.shards import ShardError, ShardSummary, build_shard, open_shard

log = logging.getLogger(__name__)


def shard_table(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per recording assigned to the given shards: stored (with its frame count) or
    quarantined (with the reason)."""
    rows = []
    for path in paths:
        with open_shard(path) as shard:
            for name, frames in zip(shard.filenames, shard.n_frames, strict=True):
                rows.append((name, shard.path.name, "stored", int(frames), ""))
            quarantined = zip(
                shard.file["quarantine_filename"].asstr()[:],
                shard.file["quarantine_reason"].asstr()[:],
                strict=True,
            )
            for name, reason in quarantined:
                rows.append((name, shard.path.name, "quarantined", 0, reason))
    return pd.DataFrame(rows, columns=["filename", "shard_file", "status", "n_frames", "reason"])


def shard_recordings(
    manifest_csv: str | Path, data_dir: str | Path, shard: int
) -> tuple[list[tuple[str, Path]], float]:
    """(filename, audio path) of the manifest recordings assigned to `shard`, and their seconds
    of audio as listed in the manifest."""
    manifest = read_manifest(manifest_csv)
    rows = manifest[manifest["shard"] == shard]
    audio_root = Path(data_dir) / TRAIN_AUDIO_DIR
    return [(name, audio_root / name) for name in rows["filename"]], rows["duration_s"].sum()


def spectrogram_stage(
    manifest_csv: str | Path,
    data_dir: str | Path,
    shard: int,
    params: AudioParams,
    out_path: str | Path,
    threads: int = 1,
) -> ShardSummary:
    """The `spectrograms` rule: build shard `shard` from the manifest rows assigned to it."""
    recordings, listed_seconds = shard_recordings(manifest_csv, data_dir, shard)
    log.info(
        "shard %d: %d recording(s), %.1f s of audio listed", shard, len(recordings), listed_seconds
    )
    with threadpool_limits(limits=threads):
        summary = build_shard(recordings, out_path, params, progress=True)
    log.info(
        "shard %d: stored %d recording(s) (%.1f s after max_duration_s), quarantined %d",
        shard,
        summary.stored,
        summary.stored_seconds,
        len(summary.quarantined),
    )
    return summary


def index_stage(
    manifest_csv: str | Path, shard_paths: Sequence[str | Path], index_csv: str | Path
) -> pd.DataFrame:
    """The `spectrogram_index` rule: one row per manifest recording, stored or quarantined.

    Fails when a manifest recording is in no shard or in several (the shards were not made from
    this manifest), so nothing goes missing between the manifest and training.
    """
    manifest = read_manifest(manifest_csv)
    table = shard_table(shard_paths)
    listed, found = set(manifest["filename"]), table["filename"]
    problems = []
    if missing := sorted(listed - set(found)):
        problems.append(f"{len(missing)} manifest recording(s) are in no shard, e.g. {missing[:5]}")
    if extra := sorted(set(found) - listed):
        problems.append(
            f"{len(extra)} shard recording(s) are not in the manifest, e.g. {extra[:5]}"
        )
    if repeated := sorted(found[found.duplicated()].unique()):
        problems.append(f"{len(repeated)} recording(s) are in several shards, e.g. {repeated[:5]}")
    if problems:
        raise ShardError(
            "shards do not match the manifest: "
            + "; ".join(problems)
            + ". Rerun the spectrograms rule."
        )
    index = manifest[["filename", "shard"]].merge(table, on="filename", validate="one_to_one")
    Path(index_csv).parent.mkdir(parents=True, exist_ok=True)
    index.to_csv(index_csv, index=False, lineterminator="\n")
    quarantined = index[index["status"] == "quarantined"]
    log.info(
        "%d recording(s) stored, %d quarantined", len(index) - len(quarantined), len(quarantined)
    )
    for name, reason in zip(quarantined["filename"], quarantined["reason"], strict=True):
        log.warning("quarantined %s: %s", name, reason)
    return index
