"""Hyperparameter search with Keras Tuner on one fold (rule tune), resumable and distributable.

The search lives in `<tuning dir>/work/`:
  search.json     what the search is for (its fingerprint): another search space or other
                  settings start a fresh search, and the old folder is kept aside, never mixed in
  search/         Keras Tuner's project: oracle.json, one trial_NN/ per trial
  oracle.json     (distributed only) where the chief listens, and whether it has finished
A job killed at any point and rerun reloads the project: finished trials are kept, the trial
that was running is run again from its start. Each trial seeds TensorFlow with seed + trial
number, so a resumed search ends where an uninterrupted one would.

Distributed (`tuner.workers` > 0): `tune_distributed`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from dawnchorus.artifacts import read_json_or_empty, write_json
from dawnchorus.learning.checkpoints import fingerprint
from dawnchorus.learning.fold_data import DataPaths, FoldData, open_fold
from dawnchorus.learning.optimization import Hyperparameters
from dawnchorus.learning.train import build_and_compile
from dawnchorus.runtime import configure_tensorflow

log = logging.getLogger(__name__)

# The seed's `best_overall_hyperparameters`; weight decay is not searched (it comes from config)
TUNED_NAMES = (
    "learning_rate",
    "batch_size",
    "optimizer",
    "scheduler",
    "dropout_rate",
    "mixup_alpha",
    "aug_prob",
)
PROJECT_NAME = "search"
# how a search runs, not what it finds: changing these neither reruns nor restarts it
TUNER_RUNTIME_KEYS = ("enabled", "workers", "oracle_host", "worker_wait_min")
_ENDED = ("COMPLETED", "FAILED")
CHIEF_ID = "chief"


class TuningError(RuntimeError):
    """The search cannot go on, or its result cannot be used; the message says why."""


# --------------------------------------------------------------------------------------------
# search space


def declare_search_space(hp, space: Mapping) -> None:
    """Register the config's `search_space` on a keras_tuner.HyperParameters (idempotent)."""
    hp.Float(
        "learning_rate",
        space["learning_rate"]["min"],
        space["learning_rate"]["max"],
        sampling="log",
    )
    hp.Choice("batch_size", list(dict.fromkeys(space["batch_size"])))
    hp.Float("dropout_rate", space["dropout"]["min"], space["dropout"]["max"])
    hp.Choice("optimizer", list(dict.fromkeys(space["optimizer"])))
    hp.Choice("scheduler", list(dict.fromkeys(space["scheduler"])))
    hp.Float("mixup_alpha", space["mixup_alpha"]["min"], space["mixup_alpha"]["max"])
    hp.Float("aug_prob", space["aug_prob"]["min"], space["aug_prob"]["max"])


def hyperparameters_from(values: Mapping, weight_decay: float) -> Hyperparameters:
    return Hyperparameters(
        learning_rate=float(values["learning_rate"]),
        batch_size=int(values["batch_size"]),
        optimizer=str(values["optimizer"]),
        scheduler=str(values["scheduler"]),
        dropout_rate=float(values["dropout_rate"]),
        mixup_alpha=float(values["mixup_alpha"]),
        aug_prob=float(values["aug_prob"]),
        weight_decay=float(weight_decay),
    )


def outside_search_space(values: Mapping, space: Mapping) -> list[str]:
    """The tuned values that the search space does not contain, described."""
    problems = []
    ranges = {
        "learning_rate": space["learning_rate"],
        "dropout_rate": space["dropout"],
        "mixup_alpha": space["mixup_alpha"],
        "aug_prob": space["aug_prob"],
    }
    for name, bounds in ranges.items():
        value = values[name]
        if not (isinstance(value, int | float) and bounds["min"] <= value <= bounds["max"]):
            problems.append(f"{name}={value!r} is outside [{bounds['min']}, {bounds['max']}]")
    for name in ("batch_size", "optimizer", "scheduler"):
        if values[name] not in space[name]:
            problems.append(f"{name}={values[name]!r} is not one of {space[name]}")
    return problems


# --------------------------------------------------------------------------------------------
# the hypermodel and the tuner


def _tuner_classes():
    import keras
    import keras_tuner

    from dawnchorus.learning.callbacks import epoch_callbacks

    class FoldHyperModel(keras_tuner.HyperModel):
        """`build` maps hp to `build_model`; `fit` applies batch size, mixup and augmentation.

        `data` is None on the chief of a distributed search, which only declares the space.
        """

        def __init__(self, config: Mapping, data: FoldData | None):
            super().__init__(name="dawnchorus")
            self._config = config
            self._data = data
            self.trial_seed = config["seed"]  # the tuner sets it per trial

        def _values(self, hp) -> Hyperparameters:
            declare_search_space(hp, self._config["search_space"])
            return hyperparameters_from(hp.values, self._config["training"]["weight_decay"])

        def declare_hyperparameters(self, hp):
            declare_search_space(hp, self._config["search_space"])

        def build(self, hp):
            chosen = self._values(hp)
            if self._data is None:
                return None
            return build_and_compile(
                self._config, self._data, chosen, self._config["tuner"]["epochs"]
            )

        def fit(self, hp, model, *args, **kwargs):
            chosen = self._values(hp)
            tuner = self._config["tuner"]
            # around Keras Tuner's own callbacks (checkpoint, reporting), so they see val_auc
            # and the weights it judged
            callbacks = epoch_callbacks(
                self._data,
                chosen,
                tuner["patience"],
                [
                    keras.callbacks.EarlyStopping(
                        monitor="val_auc", mode="max", patience=tuner["patience"]
                    ),
                    *kwargs.get("callbacks", []),
                ],
            )
            return model.fit(
                self._data.training_dataset(self._config["training"], chosen, self.trial_seed),
                epochs=kwargs.get("epochs", tuner["epochs"]),
                initial_epoch=kwargs.get("initial_epoch", 0),
                callbacks=callbacks,
                verbose=2,
                shuffle=False,
            )

    def with_logging(base):
        class LoggingTuner(base):
            """Seeds each trial by its number and logs its start and end to the job log."""

            trials_run: list[str]

            def on_trial_begin(self, trial):
                self.trials_run.append(trial.trial_id)
                # seeded by its number, a trial trains alike however the search got to it
                self.hypermodel.trial_seed = self._seed_base + int(trial.trial_id)
                keras.utils.set_random_seed(self.hypermodel.trial_seed)
                log.info(
                    "trial %s begins (tuner %s): %s",
                    trial.trial_id,
                    self.tuner_id,
                    _describe(trial.hyperparameters.values),
                )
                super().on_trial_begin(trial)

            def on_trial_end(self, trial):
                log.info(
                    "trial %s ends: %s%s",
                    trial.trial_id,
                    trial.status,
                    f" ({_last_line(trial.message)})" if trial.message else "",
                )
                super().on_trial_end(trial)

        LoggingTuner.__name__ = base.__name__
        return LoggingTuner

    tuners = {
        "random_search": keras_tuner.RandomSearch,
        "hyperband": keras_tuner.Hyperband,
        "bayesian": keras_tuner.BayesianOptimization,
    }
    return FoldHyperModel, {name: with_logging(base) for name, base in tuners.items()}


def _describe(values: Mapping) -> str:
    return ", ".join(
        f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in values.items()
    )


def _last_line(message: str | None) -> str:
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def make_tuner(config: Mapping, data: FoldData | None, work_dir: Path):
    import keras_tuner

    FoldHyperModel, tuner_classes = _tuner_classes()
    settings = config["tuner"]
    common = {
        "hypermodel": FoldHyperModel(config, data),
        "objective": keras_tuner.Objective("val_auc", direction="max"),
        "seed": config["seed"],
        "max_retries_per_trial": settings["max_retries_per_trial"],
        "max_consecutive_failed_trials": settings["max_consecutive_failed_trials"],
        "executions_per_trial": settings["executions_per_trial"],
        "directory": str(work_dir),
        "project_name": PROJECT_NAME,
        "overwrite": False,  # reload a killed search
    }
    if settings["type"] == "hyperband":
        common.update(max_epochs=settings["epochs"], factor=settings["hyperband_factor"])
    else:
        common.update(max_trials=settings["max_trials"])
    tuner = tuner_classes[settings["type"]](**common)
    tuner._seed_base = config["seed"]
    tuner.trials_run = []
    return tuner


# --------------------------------------------------------------------------------------------
# work folder


def search_settings(config: Mapping) -> dict:
    """The config a search's result depends on: not how many workers run it, or where."""
    settings = {key: config[key] for key in ("seed", "audio", "model", "training", "search_space")}
    settings["tuner"] = {
        key: value for key, value in config["tuner"].items() if key not in TUNER_RUNTIME_KEYS
    }
    return settings


def search_fingerprint(config: Mapping) -> str:
    return fingerprint(search_settings(config))


def prepare_search_dir(work_dir: Path, config: Mapping) -> None:
    """Keep a previous search only if it searched the same space with the same settings."""
    marker = work_dir / "search.json"
    wanted = search_fingerprint(config)
    if work_dir.exists():
        if read_json_or_empty(marker).get("fingerprint") == wanted:
            log.info("continuing the search in %s", work_dir)
            return
        stale = work_dir.with_name(f"{work_dir.name}-stale-{time.strftime('%Y%m%d-%H%M%S')}")
        log.warning(
            "%s holds a search with another search space or settings: starting afresh, "
            "the old search is kept in %s",
            work_dir,
            stale,
        )
        work_dir.rename(stale)
    work_dir.mkdir(parents=True)
    write_json(
        marker,
        {"fingerprint": wanted, "tuner": config["tuner"], "search_space": config["search_space"]},
        sort_keys=False,
    )


# --------------------------------------------------------------------------------------------
# results


def summarise(oracle, config: Mapping) -> dict:
    """The seed's hyperparameter_tuning_results.json, from the oracle's trials."""
    trials = []
    for trial_id in sorted(oracle.trials, key=int):  # ids are numbers, padded or not
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        trials.append(
            {
                "trial_id": trial_id,
                "status": trial.status,
                "score": _finite_or_none(trial.score),
                "best_epoch": None if trial.best_step is None else int(trial.best_step) + 1,
                "epochs": values.get("tuner/epochs"),
                "hyperparameters": {name: values.get(name) for name in TUNED_NAMES},
                "message": _last_line(trial.message) or None,
            }
        )
    scored = [t for t in trials if t["status"] == "COMPLETED" and t["score"] is not None]
    if not scored:
        reasons = "; ".join(f"trial {t['trial_id']}: {t['message']}" for t in trials)
        raise TuningError(f"no trial finished with a val_auc score ({reasons or 'no trials'})")
    best = max(scored, key=lambda t: t["score"])
    return {
        "best_overall_hyperparameters": best["hyperparameters"],
        "best_score": best["score"],
        "best_trial_id": best["trial_id"],
        "objective": {"name": "val_auc", "direction": "max"},
        "tuner_type": config["tuner"]["type"],
        "fold": config["tuner"]["fold"],
        "seed": config["seed"],
        "search_space": config["search_space"],
        "num_trials": len(trials),
        "num_completed": len(scored),
        "num_failed": sum(t["status"] in ("FAILED", "INVALID") for t in trials),
        "trials": trials,
    }


def _finite_or_none(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def write_results(results: Mapping, results_json: Path, trials_csv: Path) -> None:
    rows = [
        {
            "trial_id": t["trial_id"],
            "status": t["status"],
            "score": t["score"],
            "best_epoch": t["best_epoch"],
            **t["hyperparameters"],
            "message": t["message"],
        }
        for t in results["trials"]
    ]
    pd.DataFrame(rows).to_csv(trials_csv, index=False, lineterminator="\n")
    write_json(results_json, results, sort_keys=False)
    log.info(
        "best trial %s: val_auc %.4f with %s (%d trials, %d failed)",
        results["best_trial_id"],
        results["best_score"],
        _describe(results["best_overall_hyperparameters"]),
        results["num_trials"],
        results["num_failed"],
    )


def load_best_hyperparameters(path: str | Path, config: Mapping) -> Hyperparameters:
    """The tuning result the fold jobs train with; a clear error naming the file if unusable."""
    path = Path(path)
    try:
        best = json.loads(path.read_text())["best_overall_hyperparameters"]
        values = {name: best[name] for name in TUNED_NAMES}
        hyperparameters = hyperparameters_from(values, config["training"]["weight_decay"])
    except FileNotFoundError:
        raise TuningError(
            f"tuning result {path} does not exist: run the tune rule first, "
            "or set tuner.enabled: false to train with the config's hyperparameters"
        ) from None
    except json.JSONDecodeError as error:
        raise TuningError(
            f"tuning result {path} is not valid JSON ({error}): delete it and rerun the tune rule"
        ) from None
    except (KeyError, TypeError, ValueError) as error:
        raise TuningError(
            f"tuning result {path} lacks best_overall_hyperparameters or one of its values "
            f"{list(TUNED_NAMES)} ({type(error).__name__}: {error}): rerun the tune rule"
        ) from None
    return hyperparameters


# --------------------------------------------------------------------------------------------
# running a search in one process (distributed: `tune_distributed`)


def run_search(
    config: Mapping,
    paths: DataPaths,
    work_dir: Path,
    results_json: Path,
    trials_csv: Path,
    threads: int = 1,
) -> dict:
    """Every trial in this process (tuner.workers = 0); returns the results written."""
    prepare_search_dir(work_dir, config)
    configure_tensorflow(threads, config["training"]["mixed_precision"], config["seed"])
    with open_fold(config, config["tuner"]["fold"], paths) as data:
        tuner = make_tuner(config, data, work_dir)
        search_trials(tuner, config)
    results = summarise(tuner.oracle, config)
    write_results(results, results_json, trials_csv)
    return results


def search_trials(tuner, config: Mapping) -> None:
    finished = [t for t in tuner.oracle.trials.values() if t.status in _ENDED]
    if tuner.oracle.trials:
        log.info(
            "resuming the search: %d trial(s) already finished, %d to run again",
            len(finished),
            len(tuner.oracle.trials) - len(finished),
        )
    log.info(
        "searching with %s on fold %d: %s",
        config["tuner"]["type"],
        config["tuner"]["fold"],
        "hyperband brackets"
        if config["tuner"]["type"] == "hyperband"
        else f"{config['tuner']['max_trials']} trial(s) in all",
    )
    tuner.search(verbose=1)
