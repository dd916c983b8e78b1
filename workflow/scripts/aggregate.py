"""Rule aggregate: cv_results.json (the seed's schema) and per-class AUCs over all folds."""

import json
from pathlib import Path

from dawnchorus.logs import log_to_file
from dawnchorus.report import aggregate_folds, write_aggregate

with log_to_file(snakemake.log[0]):
    cv_results, per_class = aggregate_folds(
        snakemake.input.metrics,
        snakemake.input.oof,
        snakemake.input.manifest,
        snakemake.input.classes,
        baseline=json.loads(Path(snakemake.input.baseline).read_text()),
        training_config=snakemake.params.settings,
    )
    write_aggregate(cv_results, per_class, snakemake.output.cv_results, snakemake.output.per_class)
