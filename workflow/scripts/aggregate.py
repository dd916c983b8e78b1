"""Rule aggregate: cv_results.json (the seed's schema) and per-class AUCs over all folds."""

from dawnchorus.artifacts import read_json
from dawnchorus.logs import log_to_file
from dawnchorus.reporting.aggregate import aggregate_folds, write_aggregate

with log_to_file(snakemake.log[0]):
    # the BirdNET reference is an input only when it runs (config reference.enabled)
    reference = snakemake.input.get("reference")
    ensemble = snakemake.input.get("ensemble")  # and the blend only when it has two members
    cv_results, per_class = aggregate_folds(
        snakemake.input.metrics,
        snakemake.input.oof,
        snakemake.input.manifest,
        snakemake.input.classes,
        baseline=read_json(snakemake.input.baseline),
        training_config=snakemake.params.settings,
        reference=read_json(reference) if reference else None,
        rounds=snakemake.params.rounds,
        earlier_rounds=snakemake.params.earlier_rounds,
        ensemble=read_json(ensemble) if ensemble else None,
    )
    write_aggregate(cv_results, per_class, snakemake.output.cv_results, snakemake.output.per_class)
