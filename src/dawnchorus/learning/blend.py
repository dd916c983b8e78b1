"""The blend of the workflow's members (the CNN's fold ensemble, the BirdNET head), fitted out of
fold.

A blend is a weighted mean of the members' probabilities, taken on logits (default) or on
probabilities; the weights lie on a grid over the simplex (they sum to 1, and a member may get
0). They are fitted on out-of-fold predictions to maximise the BirdCLEF metric, so no weight
saw the recording it scores:
- the weights that score fold k are fitted on the other folds' rows (nested), which is what the
  blend's CV and OOF AUC report;
- the weights the blend predicts with are fitted on every fold's rows.

Where a member has no prediction for a row (a recording BirdNET could not read, a soundscape one
member could not decode) the row is the weighted mean of the members that have it.

Fitting needs scikit-learn (the metric); blending needs numpy only, so the inference modules
import this one while Snakemake plans the DAG.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

SPACES = ("logit", "probability")
_EPSILON = 1e-6


class BlendError(ValueError):
    """A blend's members do not fit together, or one is missing; the message names them."""


def _to_space(probabilities: np.ndarray, space: str) -> np.ndarray:
    if space == "logit":
        p = np.clip(probabilities.astype(np.float64), _EPSILON, 1 - _EPSILON)
        return np.log(p / (1 - p))
    if space == "probability":
        return probabilities.astype(np.float64)
    raise BlendError(f"unknown blend space '{space}' (one of {', '.join(SPACES)})")


def _from_space(values: np.ndarray, space: str) -> np.ndarray:
    if space == "logit":
        return 1.0 / (1.0 + np.exp(-values))
    return values


def blend_probabilities(
    members: Mapping[str, np.ndarray], weights: Mapping[str, float], space: str
) -> np.ndarray:
    """(rows, classes) blend of each member's (rows, classes) probabilities (NaN rows: the
    member has none there). A row is the weighted mean of the members that have it; where those
    all have weight 0 it is their plain mean."""
    names = list(members)
    stacked = np.stack([_to_space(np.asarray(members[name]), space) for name in names])
    present = np.isfinite(stacked).all(axis=2, keepdims=True)  # (members, rows, 1)
    weight = np.asarray([float(weights.get(name, 0.0)) for name in names])[:, None, None]
    values = np.where(present, stacked, 0.0)
    total = (weight * present).sum(axis=0)
    weighted = (weight * values).sum(axis=0)
    plain = values.sum(axis=0) / np.maximum(present.sum(axis=0), 1)
    blended = np.where(total > 0, weighted / np.where(total > 0, total, 1.0), plain)
    blended = _from_space(blended, space)
    blended[~present.any(axis=0)[:, 0]] = np.nan
    return blended.astype(np.float32)


def weight_grid(names: Sequence[str], step: float) -> list[dict[str, float]]:
    """Every weighting of `names` on a grid of `step` over the simplex (weights sum to 1)."""
    units = round(1 / step)
    if not np.isclose(units * step, 1.0):
        raise BlendError(f"weight_step {step} does not divide 1")
    grid = []
    for parts in itertools.product(range(units + 1), repeat=len(names) - 1):
        if sum(parts) <= units:
            counts = [*parts, units - sum(parts)]
            grid.append({name: count / units for name, count in zip(names, counts, strict=True)})
    return grid


def fit_weights(
    members: Mapping[str, np.ndarray], labels: np.ndarray, space: str, step: float
) -> tuple[dict[str, float], float]:
    """The grid weights whose blend scores best on these rows, and that score. Ties go to the
    weights closest to equal ones (an average of two views is the safer bet); equal weights when
    no weighting can be scored."""
    from dawnchorus.learning.metrics import birdclef_auc  # scikit-learn, kept out of DAG planning

    names = list(members)
    best: tuple[float, float, dict[str, float]] | None = None
    for weights in weight_grid(names, step):
        score = birdclef_auc(labels, blend_probabilities(members, weights, space)).macro
        if not np.isfinite(score):
            continue
        spread = float(np.ptp(list(weights.values())))
        if best is None or (score, -spread) > (best[0], -best[1]):
            best = (score, spread, weights)
    if best is None:
        # no rows to fit on (one fold trained, as in debug runs) or no class with a positive
        log.warning(
            "no weighting of %s can be scored on these %d row(s): equal weights", names, len(labels)
        )
        return {name: 1 / len(names) for name in names}, float("nan")
    return best[2], best[0]


def member_table(
    tables: Mapping[str, object], filenames: Sequence[str], classes: Sequence[str]
) -> dict[str, np.ndarray]:
    """Each member's OOF table (filename, fold, classes...) as a (recordings, classes) array in
    `filenames` order, NaN where the member has no prediction; BlendError when a member's
    classes differ from `classes`."""
    position = {name: row for row, name in enumerate(filenames)}
    arrays = {}
    for name, table in tables.items():
        columns = [column for column in table.columns if column not in ("filename", "fold")]
        if columns != list(classes):
            raise BlendError(
                f"member '{name}' predicts {len(columns)} classes, not the {len(classes)} of "
                f"classes.txt in its order: retrain it on this manifest"
            )
        array = np.full((len(filenames), len(classes)), np.nan, dtype=np.float32)
        rows = [position.get(filename) for filename in table["filename"]]
        known = [index for index, row in enumerate(rows) if row is not None]
        array[[rows[index] for index in known]] = table[columns].to_numpy()[known]
        arrays[name] = array
    return arrays


def nested_blend(
    members: Mapping[str, np.ndarray],
    labels: np.ndarray,
    folds: np.ndarray,
    folds_to_run: Sequence[int],
    space: str,
    step: float,
) -> dict:
    """Cross-validate the blend: fold k's rows blended with weights fitted on the other folds'
    rows. Returns per-fold AUCs and weights, the nested OOF predictions, the members' own
    scores on the same rows, and the weights fitted on every row (what predicts)."""
    from dawnchorus.learning.metrics import birdclef_auc

    covered = np.zeros(len(labels), dtype=bool)
    for array in members.values():
        covered |= np.isfinite(array).all(axis=1)
    covered &= np.isin(folds, list(folds_to_run))
    oof = np.full(labels.shape, np.nan, dtype=np.float32)
    per_fold = {}
    for fold in folds_to_run:
        fit_rows = covered & (folds != fold)
        val_rows = covered & (folds == fold)
        weights, _ = fit_weights(
            {name: array[fit_rows] for name, array in members.items()},
            labels[fit_rows],
            space,
            step,
        )
        scores = blend_probabilities(
            {name: array[val_rows] for name, array in members.items()}, weights, space
        )
        oof[val_rows] = scores
        auc = birdclef_auc(labels[val_rows], scores).macro
        members_auc = {
            name: _present_auc(array[val_rows], labels[val_rows]) for name, array in members.items()
        }
        per_fold[f"fold_{fold}"] = {
            "fold": int(fold),
            "val_auc": auc,
            "n_val": int(val_rows.sum()),
            "weights": weights,
            "members_val_auc": members_auc,
        }
        log.info(
            "blend fold %d: val_auc %.4f (%s), weights %s",
            fold,
            auc,
            ", ".join(f"{name} {value:.4f}" for name, value in members_auc.items()),
            weights,
        )
    weights, _ = fit_weights(
        {name: array[covered] for name, array in members.items()}, labels[covered], space, step
    )
    oof_auc = birdclef_auc(labels[covered], oof[covered])
    return {
        "weights": weights,
        "per_fold": per_fold,
        "oof": oof,
        "covered": covered,
        "oof_auc": oof_auc,
        "members_oof_auc": {
            name: _present_auc(array[covered], labels[covered]) for name, array in members.items()
        },
    }


def _present_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """A member's macro AUC on the rows it has."""
    from dawnchorus.learning.metrics import birdclef_auc

    present = np.isfinite(scores).all(axis=1)
    return birdclef_auc(labels[present], scores[present]).macro


BLEND_FORMAT = 1


def blend_weights_file(
    weights: Mapping[str, float],
    space: str,
    classes: Sequence[str],
    fold_weights: Mapping[int, Mapping[str, float]] | None = None,
) -> dict:
    """The content of ensemble/weights.json (and of the export's bundle): the weights that
    predict and, per fold k, the weights fitted without fold k (a teacher for fold k uses them)."""
    return {
        "format_version": BLEND_FORMAT,
        "members": list(weights),
        "space": space,
        "weights": dict(weights),
        "fold_weights": {str(fold): dict(value) for fold, value in (fold_weights or {}).items()},
        "classes": list(classes),
    }


def fit_blend(
    member_oof: Mapping[str, Sequence[str]],
    manifest_csv: str,
    classes_txt: str,
    folds_csv: str,
    folds_to_run: Sequence[int],
    space: str,
    step: float,
    descriptions: Mapping[str, str],
) -> tuple[dict, dict, object]:
    """Rule ensemble: each member's OOF files (name -> paths) -> (metrics in the heads' schema
    for cv_results.json, the weights file's content, the nested OOF table)."""
    import pandas as pd

    from dawnchorus.data.folds import load_labelled_clips

    if len(member_oof) < 1:
        raise BlendError("a blend needs at least one member")
    clips = load_labelled_clips(manifest_csv, classes_txt, folds_csv)
    tables = {
        name: pd.concat([pd.read_csv(path, keep_default_na=False) for path in paths])
        for name, paths in member_oof.items()
    }
    members = member_table(tables, clips.filenames, clips.classes)
    result = nested_blend(members, clips.labels, clips.folds, folds_to_run, space, step)
    covered = result["covered"]
    oof = pd.DataFrame(result["oof"][covered], columns=clips.classes)
    oof.insert(0, "fold", clips.folds[covered])
    oof.insert(0, "filename", np.asarray(clips.filenames, dtype=object)[covered])
    aucs = [entry["val_auc"] for entry in result["per_fold"].values()]
    members_cv = {
        name: {
            "mean_val_auc": float(
                np.mean([entry["members_val_auc"][name] for entry in result["per_fold"].values()])
            ),
            "oof_val_auc": result["members_oof_auc"][name],
        }
        for name in members
    }
    weights_text = ", ".join(f"{name} {weight:g}" for name, weight in result["weights"].items())
    metrics = {
        "model": (
            f"blend of {' and '.join(f'{name} ({descriptions[name]})' for name in members)}: "
            f"weighted mean of {space}s, weights {weights_text} (fitted out of fold)"
        ),
        "members": list(members),
        "space": space,
        "weights": result["weights"],
        "cv_results": {
            "mean_val_auc": float(np.mean(aucs)),
            "std_val_auc": float(np.std(aucs)),
            "oof_val_auc": result["oof_auc"].macro,
        },
        "members_cv": members_cv,
        "individual_folds": result["per_fold"],
        "per_class_oof_auc": dict(
            zip(clips.classes, map(float, result["oof_auc"].per_class), strict=True)
        ),
    }
    weights_file = blend_weights_file(
        result["weights"],
        space,
        clips.classes,
        {entry["fold"]: entry["weights"] for entry in result["per_fold"].values()},
    )
    best = max(members_cv, key=lambda name: members_cv[name]["mean_val_auc"])
    log.info(
        "blend CV %.4f (OOF %.4f); best member %s %.4f; weights %s",
        metrics["cv_results"]["mean_val_auc"],
        metrics["cv_results"]["oof_val_auc"],
        best,
        members_cv[best]["mean_val_auc"],
        weights_text,
    )
    return metrics, weights_file, oof
