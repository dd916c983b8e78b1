"""Rule tuning_report: the tuning section of `snakemake --report report.html`."""

from dawnchorus.artifacts import read_json
from dawnchorus.logs import log_to_file
from dawnchorus.reporting.plots import plot_hyperparameters_vs_score, plot_tuning_trials

with log_to_file(snakemake.log[0]):
    results = read_json(snakemake.input[0])
    plot_tuning_trials(results, snakemake.output.trials)
    plot_hyperparameters_vs_score(results, snakemake.output.hyperparameters)
