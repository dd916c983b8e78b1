"""Rule summary: the report's first page (the verdict, the models' chart, the tables below)."""

from dawnchorus.artifacts import read_json, write_bytes
from dawnchorus.logs import log_to_file
from dawnchorus.reporting.plots import plot_model_scores
from dawnchorus.reporting.summary import MODEL_NAMES, model_scores, results_summary

with log_to_file(snakemake.log[0]):
    scores = snakemake.input.get("soundscape_scores")
    ablation = snakemake.input.get("soundscape_ablation")
    cv_results = read_json(snakemake.input.cv_results)
    scores = read_json(scores) if scores else None
    ablation = read_json(ablation) if ablation else None
    plot_model_scores(
        [
            (MODEL_NAMES[model.model], model.cv, model.soundscapes)
            for model in model_scores(cv_results, scores, ablation)
        ],
        snakemake.output.chart,
    )
    summary = results_summary(cv_results, scores, ablation, chart=snakemake.output.chart)
    write_bytes(snakemake.output.summary, summary.encode())
