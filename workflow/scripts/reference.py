"""Rule reference: logistic regression on pooled BirdNET embeddings, same folds as the CNN."""

from dawnchorus.artifacts import write_json, write_table
from dawnchorus.logs import log_to_file
from dawnchorus.pretrained.reference import run_reference

with log_to_file(snakemake.log[0]):
    metrics, oof, heads = run_reference(
        snakemake.input.manifest,
        snakemake.input.classes,
        snakemake.input.folds,
        snakemake.input.shards,
        folds_to_run=snakemake.params.folds,
        seed=snakemake.params.seed,
        pooling=snakemake.params.pooling,
        C=snakemake.params.C,
        threads=snakemake.threads,
        spectrogram_index=snakemake.input.spectrogram_index,
        **snakemake.params.row_windows,
    )
    for head, path in zip(heads.values(), snakemake.output.heads, strict=True):
        head.save(path)
    write_json(snakemake.output.metrics, metrics, sort_keys=False)
    write_table(oof, snakemake.output.oof)
