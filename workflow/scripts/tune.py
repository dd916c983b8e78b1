"""Rules tune, tune_chief and tune_worker: the hyperparameter search, alone or distributed."""

from pathlib import Path

from dawnchorus.learning.fold_data import DataPaths
from dawnchorus.learning.tune import run_search
from dawnchorus.learning.tune_distributed import run_chief, run_worker
from dawnchorus.logs import log_to_file

# appended, so the log of a killed attempt survives its resumption
with log_to_file(snakemake.log[0], append=True):
    # the whole validated config: params.settings only makes a changed search rerun
    config = snakemake.config
    work_dir = Path(snakemake.params.work_dir)
    paths = DataPaths(
        manifest=Path(snakemake.input.manifest),
        classes=Path(snakemake.input.classes),
        folds=Path(snakemake.input.folds),
        shards=tuple(Path(shard) for shard in snakemake.input.shards),
    )
    if snakemake.rule == "tune_worker":
        worker = int(snakemake.wildcards.worker)
        run_worker(config, paths, work_dir, worker, Path(snakemake.output[0]), snakemake.threads)
    elif snakemake.rule == "tune_chief":
        outputs = (Path(snakemake.output.results), Path(snakemake.output.trials))
        run_chief(config, work_dir, *outputs)
    else:
        outputs = (Path(snakemake.output.results), Path(snakemake.output.trials))
        run_search(config, paths, work_dir, *outputs, threads=snakemake.threads)
