"""Rule soundscape_spectrograms: one HDF5 shard of train_soundscapes' log-mel spectrograms."""

from pathlib import Path

from dawnchorus.config import AudioParams
from dawnchorus.data.soundscapes import SOUNDSCAPE_DIR, soundscape_spectrogram_stage
from dawnchorus.logs import log_to_file

with log_to_file(snakemake.log[0]):
    root = Path(snakemake.params.data_dir) / SOUNDSCAPE_DIR
    soundscape_spectrogram_stage(
        snakemake.params.data_dir,
        [Path(path).relative_to(root).as_posix() for path in snakemake.input],
        AudioParams.from_config(snakemake.params.audio),
        snakemake.output[0],
        threads=snakemake.threads,
    )
