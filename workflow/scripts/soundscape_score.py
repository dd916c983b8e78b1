"""Rule soundscape_score: the submission's competition metric on labelled soundscapes."""

from pathlib import Path

import pandas as pd

from dawnchorus.artifacts import write_json
from dawnchorus.inference.submission import score_soundscapes
from dawnchorus.logs import log_to_file
from dawnchorus.reporting.plots import plot_soundscape_auc

with log_to_file(snakemake.log[0]):
    scores = score_soundscapes(
        pd.read_csv(snakemake.input.submission), pd.read_csv(snakemake.input.truth)
    )
    write_json(Path(snakemake.output.scores), scores, sort_keys=False)
    plot_soundscape_auc(scores, snakemake.output.plot)
