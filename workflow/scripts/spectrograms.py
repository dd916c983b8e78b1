"""Rule spectrograms: one HDF5 shard of log-mel spectrograms."""

from dawnchorus.config import AudioParams
from dawnchorus.data.spectrograms import spectrogram_stage
from dawnchorus.logs import log_to_file

with log_to_file(snakemake.log[0]):
    spectrogram_stage(
        snakemake.input.manifest,
        snakemake.params.data_dir,
        shard=int(snakemake.wildcards.shard),
        params=AudioParams.from_config(snakemake.params.audio),
        out_path=snakemake.output[0],
        threads=snakemake.threads,
    )
