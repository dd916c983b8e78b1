"""The data stage without Snakemake: manifest, folds and shards in one process.

For notebooks, tests and benchmarks that need prepared data; the workflow runs the same functions
as separate jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dawnchorus.config import AudioParams
from dawnchorus.data.folds import folds_stage
from dawnchorus.data.manifest import build_manifest, write_manifest
from dawnchorus.data.spectrograms import spectrogram_stage


@dataclass(frozen=True)
class PreparedData:
    """The files the data stage writes, laid out as under results_dir."""

    manifest: Path
    classes: Path
    folds: Path
    shards: tuple[Path, ...]
    params: AudioParams


def run_data_stage(data_dir: str | Path, out_dir: str | Path, config: dict) -> PreparedData:
    """Write data/{manifest,rejected,folds}.csv, data/classes.txt and the spectrogram shards."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    params = AudioParams.from_config(config)
    n_shards = config["shards"]["count"]
    data = out_dir / "data"
    result = build_manifest(
        data_dir, params.sample_rate, params.n_fft, n_shards=n_shards, seed=config["seed"]
    )
    write_manifest(result, data / "manifest.csv", data / "rejected.csv", data / "classes.txt")
    folds_stage(
        data / "manifest.csv",
        data / "classes.txt",
        data / "folds.csv",
        config["folds"]["n_folds"],
        seed=config["seed"],
    )
    shards = tuple(out_dir / "spectrograms" / f"shard_{i:03d}.h5" for i in range(n_shards))
    for shard, path in enumerate(shards):
        spectrogram_stage(data / "manifest.csv", data_dir, shard, params, path)
    return PreparedData(
        data / "manifest.csv", data / "classes.txt", data / "folds.csv", shards, params
    )
