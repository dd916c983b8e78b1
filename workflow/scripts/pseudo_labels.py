"""Rule pseudo_labels: a round's fold models label every window of one soundscape shard."""

from dawnchorus.inference.pseudo_labelling import write_pseudo_labels
from dawnchorus.logs import log_to_file

with log_to_file(snakemake.log[0]):
    models = snakemake.input.models
    write_pseudo_labels(
        [models] if isinstance(models, str) else list(models),
        snakemake.params.folds,
        snakemake.input.soundscapes,
        snakemake.output[0],
        threads=snakemake.threads,
    )
