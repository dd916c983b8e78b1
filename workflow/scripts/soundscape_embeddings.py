"""Rule soundscape_embeddings: BirdNET windows of every row of one train_soundscapes shard."""

from dawnchorus.logs import log_to_file
from dawnchorus.pretrained.embeddings import (
    EmbeddingSettings,
    RowWindows,
    soundscape_embedding_stage,
)

with log_to_file(snakemake.log[0]):
    soundscape_embedding_stage(
        snakemake.params.data_dir,
        snakemake.params.filenames,
        snakemake.input.model,
        EmbeddingSettings(
            **snakemake.params.settings, batch_size=snakemake.config["reference"]["batch_size"]
        ),
        RowWindows(snakemake.params.row_s, tuple(snakemake.params.row_window_offsets_s)),
        snakemake.output[0],
        threads=snakemake.threads,
    )
