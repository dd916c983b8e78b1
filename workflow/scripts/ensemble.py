"""Rule ensemble: the members' out-of-fold predictions -> blend weights (nested CV)."""

from dawnchorus.artifacts import write_json, write_table
from dawnchorus.learning.blend import fit_blend
from dawnchorus.logs import log_to_file

with log_to_file(snakemake.log[0]):
    members = snakemake.params.settings["members"]
    metrics, weights, oof = fit_blend(
        {name: snakemake.input[name] for name in members},
        snakemake.input.manifest,
        snakemake.input.classes,
        snakemake.input.folds,
        snakemake.params.folds,
        snakemake.params.settings["space"],
        snakemake.params.settings["weight_step"],
        snakemake.params.descriptions,
    )
    write_json(snakemake.output.metrics, metrics, sort_keys=False)
    write_json(snakemake.output.weights, weights, sort_keys=False)
    write_table(oof, snakemake.output.oof)
