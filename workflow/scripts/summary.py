"""Rule summary: the report's first page (CNN, baseline and reference, and whether it learned)."""

from dawnchorus.artifacts import read_json, write_bytes
from dawnchorus.logs import log_to_file
from dawnchorus.reporting.summary import results_summary

with log_to_file(snakemake.log[0]):
    scores = snakemake.input.get("soundscape_scores")
    ablation = snakemake.input.get("soundscape_ablation")
    summary = results_summary(
        read_json(snakemake.input.cv_results),
        read_json(scores) if scores else None,
        read_json(ablation) if ablation else None,
    )
    write_bytes(snakemake.output[0], summary.encode())
