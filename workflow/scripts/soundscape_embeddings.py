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
        RowWindows.from_attrs({"row_s": snakemake.params.row_s, **snakemake.params.row_windows}),
        snakemake.output[0],
        threads=snakemake.threads,
    )
