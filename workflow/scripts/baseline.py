"""Rule baseline: logistic regression on clip-level log-mel statistics, same folds as the CNN."""

import json
from pathlib import Path

from dawnchorus.baseline import run_baseline
from dawnchorus.config import AudioParams
from dawnchorus.logs import log_to_file
from dawnchorus.train import write_predictions

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
    Path(snakemake.output.metrics).write_text(json.dumps(metrics, indent=2) + "\n")
    write_predictions(oof, snakemake.output.oof)
