# dawnchorus: a BirdCLEF-layout folder -> manifest -> folds -> HDF5 log-mel shards -> ...
#
# The config file comes from --configfile; the workflow profile profiles/default (which Snakemake
# loads automatically) points at config/config.yaml, and a --configfile on the command line
# replaces it: `snakemake --configfile config/demo.yaml`.


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/self_training.smk"
include: "workflow/rules/ensemble.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/predict.smk"


rule all:
    default_target: True
    input:
        results_path("data/folds.csv"),
        results_path("spectrograms/index.csv"),
        rules.aggregate.output,
        rules.reference.output if REFERENCE_PLAN.enabled else [],
        rules.ensemble.output if BLEND else [],
        rules.report.output,
        rules.summary.output,
        rules.tuning_report.output if TUNER["enabled"] else [],
        rules.export.output,
        rules.predict.output,
        rules.soundscape_score.output if GROUND_TRUTH.is_file() else [],
        rules.soundscape_ablation.output if SOUNDSCAPE_ABLATION else [],
