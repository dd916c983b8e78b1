"""Rule train_fold: train (or resume) one cross-validation fold."""

from pathlib import Path

from dawnchorus.logs import log_to_file
from dawnchorus.train import FoldPaths, Hyperparameters, train_fold

# appended, so the log of a killed attempt survives its resumption
with log_to_file(snakemake.log[0], append=True):
    settings = snakemake.params.settings
    paths = FoldPaths(
        manifest=Path(snakemake.input.manifest),
        classes=Path(snakemake.input.classes),
        folds=Path(snakemake.input.folds),
        shards=tuple(Path(shard) for shard in snakemake.input.shards),
        out_dir=Path(snakemake.output.model).parent,
        tensorboard_dir=Path(snakemake.params.tensorboard_dir),
    )
    train_fold(
        settings,
        int(snakemake.wildcards.fold),
        paths,
        Hyperparameters.from_config(settings),
        threads=snakemake.threads,
    )
