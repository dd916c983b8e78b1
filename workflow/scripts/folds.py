"""Rule folds: iterative multilabel stratified K-fold over primary + secondary labels."""

from dawnchorus.data.folds import folds_stage
from dawnchorus.logs import log_to_file

with log_to_file(snakemake.log[0]):
    folds_stage(
        snakemake.input.manifest,
        snakemake.input.classes,
        snakemake.output[0],
        n_folds=snakemake.params.n_folds,
        seed=snakemake.params.seed,
    )
