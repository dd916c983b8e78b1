"""Rule spectrogram_index: every manifest recording, stored or quarantined with its reason."""

from dawnchorus.data.spectrograms import index_stage
from dawnchorus.logs import log_to_file

with log_to_file(snakemake.log[0]):
    index_stage(snakemake.input.manifest, snakemake.input.shards, snakemake.output[0])
