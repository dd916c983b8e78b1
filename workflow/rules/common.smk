"""Config validation, path helpers and input functions shared by every rule file."""

import os
from dataclasses import asdict
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import min_version

from dawnchorus.config import ConfigError, validate_config
from dawnchorus.data.soundscapes import list_soundscapes, soundscapes_of_shard
from dawnchorus.inference.runtimes import engine_file
from dawnchorus.inference.submission import SUBMISSION_SETTINGS
from dawnchorus.learning.train import round_training_config
from dawnchorus.learning.tune import search_settings
from dawnchorus.pretrained.embeddings import (
    EmbeddingSettings,
    ReferenceModelError,
    plan_reference,
)
from dawnchorus.signal.audio import AUDIO_SUFFIXES

min_version("9.0")

# Jobs import dawnchorus from this checkout. The project venv has it installed (editable); a conda
# environment of envs/ (--software-deployment-method conda) has only its dependencies, so the
# source goes on the path of every job, local or submitted (sbatch passes the environment on).
# (The workflow sets the variable rather than requiring it, hence no `envvars:` directive.)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(
            None, [str(Path(workflow.basedir) / "src"), os.environ.get("PYTHONPATH")]
        )
    )
)

if not config:
    raise WorkflowError(
        "no configuration: pass --configfile config/config.yaml (or config/demo.yaml, "
        "config/debug.yaml); the workflow profile profiles/default does this unless it is "
        "switched off with --workflow-profile none"
    )
try:
    validate_config(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

DATA_DIR = Path(config["data_dir"])
RESULTS_DIR = Path(config["results_dir"])
SHARD_IDS = [f"{shard:03d}" for shard in range(config["shards"]["count"])]
# The jobs on the way to the fold models go first when cores are scarce (`priority:`): the
# BirdNET reference and the baseline, which no training waits for, then fill the cores that
# training leaves idle (the end of a round, when its last fold trains alone) instead of
# holding back the first fold. The tuning chief keeps its own, higher priority.
TRAINING_PATH_PRIORITY = 10

if not DATA_DIR.is_dir():
    raise WorkflowError(
        f"data_dir '{DATA_DIR}' does not exist (relative to {Path.cwd()}): point data_dir at a "
        "folder in the BirdCLEF 2025 layout, e.g. --config data_dir=/path/to/birdclef-2025, "
        "or generate the demo set with `make demo-data`"
    )


wildcard_constraints:
    shard=r"\d{3}",


def data_path(*parts):
    return str(DATA_DIR.joinpath(*parts))


def results_path(*parts):
    return str(RESULTS_DIR.joinpath(*parts))


def log_path(*parts):
    return results_path("logs", *parts)


def benchmark_path(*parts):
    return results_path("benchmarks", *parts)


def shard_files():
    return expand(results_path("spectrograms", "shard_{shard}.h5"), shard=SHARD_IDS)


def debug_max_samples():
    """Manifest subsampling applies in debug mode only."""
    return config["debug"]["max_samples"] if config["debug"]["enabled"] else None


wildcard_constraints:
    fold=r"\d+",


def training_settings():
    """The config sections a trained model depends on (a change to them reruns training)."""
    keys = ("seed", "audio", "model", "training")
    return {key: config[key] for key in keys}


SELF_TRAINING = config["semi_supervised"]
# listed when the workflow is parsed (a soundscape added later reruns its shard's jobs)
TRAIN_SOUNDSCAPES = list_soundscapes(DATA_DIR) if SELF_TRAINING["rounds"] else []
# Without soundscapes a warm-started round still trains every fold through a second
# learning-rate cycle from the round before's weights, which is most of what a round is
# worth on the demo; without warm_start it would only repeat round 0.
ROUNDS = (
    SELF_TRAINING["rounds"] if TRAIN_SOUNDSCAPES or SELF_TRAINING["warm_start"] else 0
)
if SELF_TRAINING["rounds"] and not TRAIN_SOUNDSCAPES:
    if ROUNDS:
        which = "round 1 trains" if ROUNDS == 1 else f"rounds 1 to {ROUNDS} train"
        what_runs = (
            f"{which} the folds again from the round before's weights on the labelled "
            "recordings alone (a warm restart: no pseudo-labels, no mixing)"
        )
    else:
        what_runs = (
            "only round 0 (the labelled recordings) is trained (warm_start is false)"
        )
    logger.warning(
        f"semi_supervised.rounds is {SELF_TRAINING['rounds']}, but "
        f"{DATA_DIR / 'train_soundscapes'} holds no audio file to self-train on: {what_runs}"
    )
SOUNDSCAPE_SHARD_IDS = [f"{shard:03d}" for shard in range(SELF_TRAINING["shards"])]


wildcard_constraints:
    round=r"\d+",


def fold_dir(round_index, fold="{fold}"):
    """A fold's model folder: round 0 (training on the labelled recordings) keeps the paths
    of a workflow without self-training, round r >= 1 has its own."""
    if str(round_index) == "0":
        return results_path("models", f"fold_{fold}")
    return results_path("models", f"round_{round_index}", f"fold_{fold}")


def round_fold_files(round_index, name):
    return [
        str(Path(fold_dir(round_index, fold), name))
        for fold in config["folds"]["train"]
    ]


def trained_fold_files(name):
    """The last round's fold files: what aggregate, report, export and predict use."""
    return round_fold_files(ROUNDS, name)


def soundscape_shard_files():
    return expand(
        results_path("soundscapes", "shard_{shard}.h5"), shard=SOUNDSCAPE_SHARD_IDS
    )


def soundscape_names(shard):
    """The train_soundscapes a soundscape shard holds (relative to train_soundscapes/)."""
    return soundscapes_of_shard(TRAIN_SOUNDSCAPES, int(shard), SELF_TRAINING["shards"])


def soundscapes_of(wildcards):
    return [
        data_path("train_soundscapes", name)
        for name in soundscape_names(wildcards.shard)
    ]


def pseudo_label_files(round_index):
    return expand(
        results_path("rounds", str(round_index), "pseudo_labels", "shard_{shard}.h5"),
        shard=SOUNDSCAPE_SHARD_IDS,
    )


def round_settings(wildcards):
    """What a round's fold model depends on: the training settings, the self-training ones,
    and the round's epochs (semi_supervised.epochs)."""
    settings = round_training_config(config, int(wildcards.round))
    keys = ("seed", "audio", "model", "training", "semi_supervised")
    return {key: settings[key] for key in keys}


def round_fold_inputs(wildcards):
    """A self-training round's fold: the inputs of any fold, the round before's pseudo-labels
    and soundscape shards (when there are train soundscapes), and with warm_start that round's
    model of the same fold."""
    round_index = int(wildcards.round)
    if round_index < 1:
        raise WorkflowError(
            f"round 0 has no round folder: its models are {fold_dir(0, wildcards.fold)}"
        )
    if int(wildcards.fold) not in config["folds"]["train"]:
        raise WorkflowError(
            f"round {round_index} trains only the folds of folds.train "
            f"{config['folds']['train']}: fold {wildcards.fold} learns from its own model of "
            "the round before, which those folds do not include"
        )
    inputs = fold_inputs(wildcards)
    if TRAIN_SOUNDSCAPES:
        inputs["pseudo_labels"] = pseudo_label_files(round_index - 1)
        inputs["soundscape_shards"] = soundscape_shard_files()
    if SELF_TRAINING["warm_start"]:
        inputs["initial_model"] = str(
            Path(fold_dir(round_index - 1, wildcards.fold), "model.keras")
        )
    return inputs


def round_cv_files():
    """Every round's fold metrics and OOF predictions before the last, for cv_results.json."""
    return [
        {
            "round": round_index,
            "metrics": round_fold_files(round_index, "metrics.json"),
            "oof": round_fold_files(round_index, "oof.csv"),
        }
        for round_index in range(ROUNDS)
    ]


def data_inputs(wildcards=None):
    """The data stage's outputs that training and tuning jobs read."""
    return {
        "manifest": rules.manifest.output.manifest,
        "classes": rules.manifest.output.classes,
        "folds": rules.folds.output[0],
        "shards": shard_files(),
    }


TUNER = config["tuner"]
TUNING_RESULTS = results_path("tuning", "hyperparameter_tuning_results.json")
TUNING_WORKERS = list(range(TUNER["workers"]))


def tuning_settings():
    """The config a search result depends on (a change to it reruns tuning)."""
    return search_settings(config)


def tuning_worker_outputs():
    return expand(
        results_path("tuning", "workers", "worker_{worker}.json"), worker=TUNING_WORKERS
    )


def fold_inputs(wildcards):
    """The data stage's outputs, after checking the fold exists (a clear error, not a failed job),
    and the tuning result when the folds train with tuned hyperparameters."""
    fold, n_folds = int(wildcards.fold), config["folds"]["n_folds"]
    if fold >= n_folds:
        raise WorkflowError(
            f"fold {fold} does not exist: folds.n_folds is {n_folds}, so folds are "
            f"0..{n_folds - 1} (asked for {results_path('models', f'fold_{fold}')})"
        )
    inputs = data_inputs()
    if TUNER["enabled"]:
        inputs["tuning"] = TUNING_RESULTS
        # workers are requested here so that they run beside the chief, not after it
        inputs["tuning_workers"] = tuning_worker_outputs()
    return inputs


PREDICT = config["predict"]
SOUNDSCAPE_DIR = DATA_DIR / "test_soundscapes"
SAMPLE_SUBMISSION = DATA_DIR / "sample_submission.csv"
GROUND_TRUTH = DATA_DIR / PREDICT["ground_truth"]
SOUNDSCAPE_ABLATION = PREDICT["ablation"]["enabled"] and GROUND_TRUTH.is_file()


def predicted_fold_models(round_index=ROUNDS):
    """The fold models a round's ensemble averages (the last round's by default)."""
    folds = PREDICT["folds"] or config["folds"]["train"]
    return [str(Path(fold_dir(round_index, fold), "model.keras")) for fold in folds]


def ablation_round_models():
    """Every round's ensemble, for the soundscape ablation."""
    return {
        round_index: predicted_fold_models(round_index)
        for round_index in range(ROUNDS + 1)
    }


def test_soundscapes():
    """Listed when the workflow is parsed: a soundscape added later reruns predict."""
    if not SOUNDSCAPE_DIR.is_dir():
        return []
    return sorted(
        str(path)
        for path in SOUNDSCAPE_DIR.iterdir()
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES
    )


def soundscape_inputs(wildcards):
    """What predicting the test soundscapes needs besides the CNN's models."""
    inputs = {
        "classes": rules.manifest.output.classes,
        "soundscapes": test_soundscapes(),
        **blend_inputs(),
    }
    if SAMPLE_SUBMISSION.is_file():
        inputs["sample_submission"] = str(SAMPLE_SUBMISSION)
    return inputs


def prediction_inputs(wildcards):
    if PREDICT["engine"] == "keras":
        return {"models": predicted_fold_models(), **soundscape_inputs(wildcards)}
    return {
        # the export's card: it names the file that runs (the configured engine's, or
        # model.tflite where a reduced precision failed its AUC check)
        "models": results_path("export", "model.json"),
        "engine_file": exported_model(),
        **soundscape_inputs(wildcards),
    }


REFERENCE = config["reference"]
try:
    REFERENCE_PLAN = plan_reference(REFERENCE)
except ReferenceModelError as error:
    raise WorkflowError(str(error)) from None
if REFERENCE_PLAN.skipped_because:
    logger.warning(REFERENCE_PLAN.skipped_because)


def embedding_files():
    return expand(results_path("embeddings", "shard_{shard}.h5"), shard=SHARD_IDS)


def embedding_settings():
    """What the embedding shards depend on besides the model (a change reruns them); the batch
    size changes memory, not results, so the script reads it from the config instead."""
    settings = asdict(EmbeddingSettings.from_config(config))
    del settings["batch_size"]
    return settings


def row_window_params():
    """How the heads hear a soundscape's rows (`pretrained.embeddings.RowWindows`): a change
    reruns the heads and the soundscape embeddings."""
    grid = REFERENCE["window_hop_s"] is not None
    return {
        # offsets are not used with a grid: changing them reruns nothing then
        "row_window_offsets_s": [] if grid else REFERENCE["row_window_offsets_s"],
        "window_hop_s": REFERENCE["window_hop_s"],
    }


def reference_heads():
    return [
        results_path("reference", f"fold_{fold}", "head.npz")
        for fold in config["folds"]["train"]
    ]


def reference_metrics():
    """The reference's metrics for the aggregate rule: none when the reference is skipped."""
    return results_path("reference", "metrics.json") if REFERENCE_PLAN.enabled else []


ENSEMBLE = dict(config["ensemble"])
AVAILABLE_MEMBERS = ["cnn", *(["head"] if REFERENCE_PLAN.enabled else [])]
if ENSEMBLE["members"] is None:
    ENSEMBLE["members"] = AVAILABLE_MEMBERS
    if not REFERENCE_PLAN.enabled and REFERENCE["enabled"] is not False:
        logger.warning(
            "the blend is the CNN alone: its other member, the BirdNET head, needs the "
            "reference (see the message above)"
        )
elif missing := sorted(set(ENSEMBLE["members"]) - set(AVAILABLE_MEMBERS)):
    raise WorkflowError(
        f"ensemble.members names {missing}, which does not run here: the head needs the BirdNET "
        "reference (reference.enabled and its model; see the message above), or leave it out "
        "of ensemble.members"
    )
BLEND = len(ENSEMBLE["members"]) > 1
# The self-training rounds' teacher: each fold's CNN, or its blend with that fold's head
BLENDED_TEACHER = (
    SELF_TRAINING["teacher"] == "ensemble" and BLEND and bool(TRAIN_SOUNDSCAPES)
)
if SELF_TRAINING["teacher"] == "ensemble" and not BLEND and ROUNDS:
    logger.warning(
        "semi_supervised.teacher is ensemble, but there is no blend (ensemble.members "
        f"{ENSEMBLE['members']}): each fold's CNN labels the soundscapes alone"
    )


def member_descriptions(round_index=ROUNDS):
    return {
        "cnn": f"the CNN's fold ensemble, round {round_index}",
        "head": "the BirdNET head",
    }


MEMBER_DESCRIPTIONS = member_descriptions()


def member_oof_files(member, round_index=ROUNDS):
    if member == "cnn":
        return round_fold_files(round_index, "oof.csv")
    return [results_path("reference", "oof.csv")]


def ensemble_inputs(wildcards, round_index=ROUNDS):
    return {
        **{
            member: member_oof_files(member, round_index)
            for member in ENSEMBLE["members"]
        },
        "manifest": rules.manifest.output.manifest,
        "classes": rules.manifest.output.classes,
        "folds": rules.folds.output[0],
    }


def teacher_weight_inputs(wildcards):
    """The blend of round r's CNN and the head, fitted out of fold: round r+1's teacher."""
    return ensemble_inputs(wildcards, int(wildcards.round))


def teacher_inputs(wildcards):
    """A blended teacher's heads, weights and soundscape rows; none for the CNN alone."""
    if not BLENDED_TEACHER:
        return {}
    return {
        "heads": reference_heads(),
        "teacher_weights": results_path(
            "rounds", wildcards.round, "teacher", "weights.json"
        ),
        "soundscape_embeddings": results_path(
            "soundscape_embeddings", f"shard_{wildcards.shard}.h5"
        ),
    }


def predicted_heads():
    """The heads of the folds whose CNN models predict."""
    folds = PREDICT["folds"] or config["folds"]["train"]
    return [results_path("reference", f"fold_{fold}", "head.npz") for fold in folds]


def blend_inputs():
    """The blend's other member and its weights, for whatever predicts: none without a blend."""
    if not BLEND:
        return {}
    return {
        "heads": predicted_heads(),
        "embedding_model": str(REFERENCE_PLAN.model),
        "blend_weights": results_path("ensemble", "weights.json"),
    }


def export_blend_inputs(wildcards):
    """The export's check of the blend: the heads, weights and the recordings' embeddings."""
    if not BLEND:
        return {}
    return {
        "heads": predicted_heads(),
        "blend_weights": results_path("ensemble", "weights.json"),
        "embedding_shards": embedding_files(),
    }


def exported_model():
    """The export's file the configured engine runs (model.tflite for tflite fp32 and
    openvino's fp32/bf16); the fold models when the engine is keras."""
    if PREDICT["engine"] == "keras":
        return []
    return results_path("export", engine_file(PREDICT["engine"], PREDICT["precision"]))


def calibration_soundscapes():
    """Unlabelled soundscapes (train_soundscapes/, evenly spread) whose windows calibrate a
    reduced precision: the audio the export will predict. [] without them or for fp32.
    """
    if PREDICT["engine"] == "keras" or PREDICT["precision"] == "fp32":
        return []
    names = list_soundscapes(DATA_DIR)
    step = max(1, len(names) // CALIBRATION_SOUNDSCAPES)
    root = DATA_DIR / "train_soundscapes"
    return [str(root / name) for name in names[::step][:CALIBRATION_SOUNDSCAPES]]


CALIBRATION_SOUNDSCAPES = 16  # 8 windows of each give predict.calibration_windows' 128


def export_engine_output():
    """The engine's file when it is not model.tflite itself."""
    path = exported_model()
    return path if path and not path.endswith(engine_file("tflite", "fp32")) else []


def export_blend_output():
    return results_path("export", "blend.npz") if BLEND else []


def ensemble_metrics():
    return results_path("ensemble", "metrics.json") if BLEND else []


def summary_inputs(wildcards):
    """The CV summary, and the soundscape score where window labels exist (the demo's)."""
    inputs = {"cv_results": results_path("cv_results.json")}
    if GROUND_TRUTH.is_file():
        inputs["soundscape_scores"] = results_path(
            "predictions", "soundscape_scores.json"
        )
    if SOUNDSCAPE_ABLATION:
        inputs["soundscape_ablation"] = results_path(
            "predictions", "soundscape_ablation.json"
        )
    return inputs
