"""Rules train_fold and train_round_fold: train (or resume) one cross-validation fold."""

from pathlib import Path

from dawnchorus.learning.fold_data import FoldPaths
from dawnchorus.learning.optimization import Hyperparameters
from dawnchorus.learning.train import train_fold
from dawnchorus.learning.tune import load_best_hyperparameters
from dawnchorus.logs import log_to_file


def paths_of(files) -> tuple[Path, ...]:
    """A named input as paths (Snakemake gives a one-file list as a string)."""
    return (Path(files),) if isinstance(files, str) else tuple(map(Path, files or ()))


# appended, so the log of a killed attempt survives its resumption
with log_to_file(snakemake.log[0], append=True):
    settings = snakemake.params.settings
    initial_model = snakemake.input.get("initial_model")  # a round's warm start
    paths = FoldPaths(
        manifest=Path(snakemake.input.manifest),
        classes=Path(snakemake.input.classes),
        folds=Path(snakemake.input.folds),
        shards=paths_of(snakemake.input.shards),
        out_dir=Path(snakemake.output.model).parent,
        tensorboard_dir=Path(snakemake.params.tensorboard_dir),
        pseudo_labels=paths_of(snakemake.input.get("pseudo_labels")),
        soundscape_shards=paths_of(snakemake.input.get("soundscape_shards")),
        initial_model=Path(initial_model) if initial_model else None,
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
        round_index=int(snakemake.wildcards.get("round", 0)),
    )
