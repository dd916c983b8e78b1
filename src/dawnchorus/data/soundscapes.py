"""The unlabelled `train_soundscapes/`: which there are, which shard holds each, and their log-mel
in shards of the spectrogram contract (rule soundscape_spectrograms).

Training recordings are focal (near, loud, one species); the soundscapes to predict come from
passive recorders (far, overlapping, noisy). The self-training rounds (`semi_supervised`) close
that gap with pseudo-labelled windows of these soundscapes (`pseudo_labels`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from threadpoolctl import threadpool_limits

from dawnchorus.config import AudioParams
from dawnchorus.data.manifest import shard_for
from dawnchorus.data.shards import ShardSummary, build_shard
from dawnchorus.signal.audio import find_recordings

log = logging.getLogger(__name__)

SOUNDSCAPE_DIR = "train_soundscapes"


def list_soundscapes(data_dir: str | Path) -> list[str]:
    """Audio files under data_dir/train_soundscapes (paths relative to it, sorted); [] when the
    folder does not exist."""
    root = Path(data_dir) / SOUNDSCAPE_DIR
    if not root.is_dir():
        return []
    return sorted(path.relative_to(root).as_posix() for path in find_recordings([root]))


def soundscapes_of_shard(filenames: Sequence[str], shard: int, n_shards: int) -> list[str]:
    """The soundscapes a shard holds (the manifest's stable hash, so adding one file moves no
    other)."""
    return [name for name in filenames if shard_for(name, n_shards) == shard]


def soundscape_spectrogram_stage(
    data_dir: str | Path,
    filenames: Sequence[str],
    params: AudioParams,
    out_path: str | Path,
    threads: int = 1,
) -> ShardSummary:
    """One shard of train_soundscapes' log-mel; an unreadable soundscape is quarantined in it
    with its reason (and logged), the others are stored."""
    root = Path(data_dir) / SOUNDSCAPE_DIR
    log.info("%s: %d soundscape(s)", Path(out_path).name, len(filenames))
    with threadpool_limits(limits=threads):
        summary = build_shard(
            [(name, root / name) for name in filenames], out_path, params, progress=True
        )
    log.info(
        "stored %d soundscape(s) (%.0f s), quarantined %d",
        summary.stored,
        summary.stored_seconds,
        len(summary.quarantined),
    )
    return summary
