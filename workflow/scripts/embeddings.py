"""Rule embeddings: BirdNET embeddings of one shard's recordings, 3-s windows at 48 kHz."""

from dawnchorus.logs import log_to_file
from dawnchorus.pretrained.embeddings import EmbeddingSettings, embedding_stage

with log_to_file(snakemake.log[0]):
    embedding_stage(
        snakemake.input.manifest,
        snakemake.params.data_dir,
        shard=int(snakemake.wildcards.shard),
        model_path=snakemake.input.model,
        settings=EmbeddingSettings(
            **snakemake.params.settings, batch_size=snakemake.config["reference"]["batch_size"]
        ),
        out_path=snakemake.output[0],
        threads=snakemake.threads,
    )
