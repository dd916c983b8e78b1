"""Rule report: the plots that `snakemake --report report.html` collects."""

import pandas as pd

from dawnchorus.logs import log_to_file
from dawnchorus.reporting.plots import (
    plot_frequency_vs_auc,
    plot_learning_curves,
    plot_per_class_auc,
)

with log_to_file(snakemake.log[0]):
    per_class = pd.read_csv(snakemake.input.per_class)
    plot_learning_curves(snakemake.input.history, snakemake.output.learning_curves)
    plot_per_class_auc(per_class, snakemake.output.per_class_auc)
    plot_frequency_vs_auc(per_class, snakemake.output.frequency_vs_auc)
