"""Rule baseline: logistic regression on clip-level log-mel statistics, same folds as the CNN."""

from dawnchorus.artifacts import write_json, write_table
from dawnchorus.config import AudioParams
from dawnchorus.learning.baseline import run_baseline
from dawnchorus.logs import log_to_file

with log_to_file(snakemake.log[0]):
    metrics, oof = run_baseline(
        snakemake.input.manifest,
        snakemake.input.classes,
        snakemake.input.folds,
        snakemake.input.shards,
        AudioParams.from_config(snakemake.params.audio),
        folds_to_run=snakemake.params.folds,
        seed=snakemake.params.seed,
    )
    write_json(snakemake.output.metrics, metrics, sort_keys=False)
    write_table(oof, snakemake.output.oof)
