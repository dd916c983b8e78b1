"""Rule pseudo_labels: a round's fold models (or each fold's blend of its CNN and its BirdNET
head) label every window of one soundscape shard."""

from dawnchorus.inference.pseudo_labelling import BlendedTeacher, write_pseudo_labels
from dawnchorus.logs import log_to_file

with log_to_file(snakemake.log[0]):
    models = snakemake.input.models
    weights = snakemake.input.get("teacher_weights")  # only with semi_supervised.teacher ensemble
    teacher = (
        BlendedTeacher.load(
            snakemake.input.heads,
            snakemake.params.folds,
            weights,
            snakemake.input.soundscape_embeddings,
            snakemake.params.row_s,
        )
        if weights
        else None
    )
    write_pseudo_labels(
        [models] if isinstance(models, str) else list(models),
        snakemake.params.folds,
        snakemake.input.soundscapes,
        snakemake.output[0],
        threads=snakemake.threads,
        teacher=teacher,
    )
