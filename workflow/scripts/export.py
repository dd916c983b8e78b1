"""Rule export: the fold ensemble as one TFLite model, checked against Keras on real windows."""

from dawnchorus.inference.export import export_stage
from dawnchorus.logs import log_to_file

with log_to_file(snakemake.log[0]):
    export_stage(
        snakemake.input.models,
        snakemake.input.manifest,
        snakemake.input.shards,
        snakemake.params.config,
        snakemake.output.model,
        threads=snakemake.threads,
        # the blend's heads and weights, when there is a blend
        heads=snakemake.input.get("heads", []),
        weights_json=snakemake.input.get("blend_weights"),
        embedding_shards=snakemake.input.get("embedding_shards", []),
        # int8's calibration audio: soundscapes, what it will predict (else training clips)
        calibration_audio=snakemake.input.get("calibration_audio", []),
        clip_audio_dir=snakemake.params.clip_audio_dir,
        taxonomy_csv=snakemake.input.taxonomy,
    )
