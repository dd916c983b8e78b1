"""Rule predict: the test soundscapes -> predictions/submission.csv (Kaggle's format)."""

from dawnchorus.inference.submission import submission_stage
from dawnchorus.logs import log_to_file

with log_to_file(snakemake.log[0]):
    models = snakemake.input.models
    submission_stage(
        [models] if isinstance(models, str) else models,
        snakemake.input.soundscapes,
        snakemake.input.classes,
        snakemake.params.settings,
        snakemake.output.submission,
        snakemake.output.problems,
        sample_submission=snakemake.input.get("sample_submission"),
        threads=snakemake.threads,
        # the blend's head member, when there is a blend
        heads=snakemake.input.get("heads", []),
        embedding_model=snakemake.input.get("embedding_model"),
        weights_json=snakemake.input.get("blend_weights"),
    )
