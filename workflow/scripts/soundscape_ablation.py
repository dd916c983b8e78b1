"""Rule soundscape_ablation: every round x post-processing scored on the labelled soundscapes,
and with a blend, the BirdNET head alone and the blend."""

from pathlib import Path

import pandas as pd

from dawnchorus.artifacts import write_json
from dawnchorus.data.manifest import read_classes
from dawnchorus.inference.soundscape_ablation import AblationGrid, soundscape_ablation
from dawnchorus.logs import log_to_file

with log_to_file(snakemake.log[0]):
    weights = snakemake.input.get("blend_weights")  # only with a blend
    ablation = soundscape_ablation(
        {int(round_index): paths for round_index, paths in snakemake.params.round_models.items()},
        snakemake.input.soundscapes,
        pd.read_csv(snakemake.input.truth),
        read_classes(snakemake.input.classes),
        snakemake.params.settings,
        AblationGrid.from_config(snakemake.params.grid),
        sample_submission=snakemake.input.get("sample_submission"),
        threads=snakemake.threads,
        blend_parts=(
            {
                "heads": snakemake.input.heads,
                "embedding_model": snakemake.input.embedding_model,
                "weights_json": weights,
            }
            if weights
            else None
        ),
    )
    write_json(Path(snakemake.output[0]), ablation, sort_keys=False)
