"""Rule train_fold: train (or resume) one cross-validation fold."""

from pathlib import Path

from dawnchorus.logs import log_to_file
from dawnchorus.train import FoldPaths, Hyperparameters, train_fold
from dawnchorus.tune import load_best_hyperparameters

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
    tuning = snakemake.input.get("tuning")  # absent when tuner.enabled is false
    if tuning:
        hyperparameters = load_best_hyperparameters(tuning, settings)
        source = f"tuning ({tuning})"
    else:
        hyperparameters, source = Hyperparameters.from_config(settings), "config"
    train_fold(
        settings,
        int(snakemake.wildcards.fold),
        paths,
        hyperparameters,
        threads=snakemake.threads,
        hyperparameter_source=source,
    )
