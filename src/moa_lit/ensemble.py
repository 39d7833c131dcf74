"""``python -m moa_lit.train experiment=ensemble``: several model families
trained on the same folds in one run, blended with weights that never see
the rows they are scored on.

Each family of ``ensemble.models`` (name -> a ``model`` config; the preset
has the MLP and the linear model) is trained by ``train`` into
``members/<name>/``, a complete run with the ensemble's data, cv, seeds and
``final_model`` settings, so every member has the same folds. The blend
reuses ``blend``'s weights (non-negative, summing to one, minimising the mean
column-wise log loss over the new-drug rows: a handful of numbers per fold, fitted on thousands of
rows, where per-target weights would be fitted on a few positives each):

- nested OOF: the rows of fold k are blended with weights fitted on the
  other folds' OOF predictions only; this honest OOF is what the run reports;
- the submission and ``predict``: weights fitted on all OOF rows.

The run folder holds what a blend holds (``oof.csv``, ``scores.json`` with
the per-fold and final weights of every family, ``run.json`` naming the
members relative to the folder, ``submission.csv``, labels, folds, report)
plus the members; ``predict run_dir=<ensemble>`` averages the members'
predictions with the final weights.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from moa_lit import schema
from moa_lit.blend import load_runs, nested_blend, nested_weights, optimise_weights
from moa_lit.errors import MoAError
from moa_lit.report import build_report
from moa_lit.run_checks import end_untrusted_run, untrusted_reasons
from moa_lit.runs import files
from moa_lit.runs.combine import labels_in_fold_order, new_drugs_of, score_oof, weighted_average, write_combined
from moa_lit.runs.manifest import BlendMember
from moa_lit.runs.run_dir import RunDir, check_apart_from_data
from moa_lit.scoring.scores import NEW_DRUGS, choosing_rows, headline_scores, optimized_score, score_line
from moa_lit.settings import CVSettings, typed
from moa_lit.timing import PhaseTimer

log = logging.getLogger("moa_lit.train")

WEIGHTS_METHOD = (
    "non-negative weights summing to 1 minimising the mean column-wise log loss over the new-drug rows "
    "(treated rows where there are no drug ids); "
    "OOF rows of fold k blended with weights fitted on the other folds' OOF only"
)


def refuse_model_overrides(overrides: list[str]) -> None:
    """``model.*`` on the command line changes nothing in an ensemble run."""
    for arg in overrides:
        key = arg.lstrip("+~").split("=", 1)[0]
        if key == "model" or key.startswith("model."):
            rest = key[len("model."):] if key.startswith("model.") else ""
            example = f"ensemble.models.mlp.{rest}" if rest else "+model@ensemble.models.resnet=resnet"
            raise MoAError(
                f"{arg.lstrip('+~')} has no effect in an ensemble run (ensemble.models is set): each family has "
                f"its own model settings, e.g. {example}"
            )


def member_configs(cfg: DictConfig, run: RunDir) -> dict[str, DictConfig]:
    """Each family's training config: the ensemble's settings with the
    family's model, written into ``members/<name>/``. A member worse than the
    prior is kept (its weight says so); the ensemble's result is checked."""
    members = {}
    for name, model in cfg.ensemble.models.items():
        member = copy.deepcopy(cfg)
        with open_dict(member):
            member.model = copy.deepcopy(model)
            member.ensemble.models = None
            member.paths.output_dir = str(run.member(str(name)).path)
            member.allow_worse_than_prior = True
        members[str(name)] = member
    return members


def blend_members(run: RunDir, names: list[str]) -> dict:
    """The nested OOF, the final weights and what the run folder gets."""
    runs = load_runs([run.member(n).path for n in names])  # refuses members with other folds or rows
    first = runs[0]
    targets = list(first.oof.columns[1:])
    labels = labels_in_fold_order(first.run, first.folds, targets)
    rows = labels.rows_of(first.oof[schema.ID], first.path / files.OOF)
    truth = labels.targets[rows]
    fold_of_row = first.folds["fold"].to_numpy()[rows]
    predictions = [r.oof[targets].to_numpy(dtype=np.float64) for r in runs]
    fold_ids = sorted(int(k) for k in np.unique(fold_of_row))
    new_drugs = new_drugs_of(first, labels)
    fit = choosing_rows(new_drugs[0], labels.is_control)[rows]  # the new-drug rows, else the treated rows
    per_fold = nested_weights(truth, predictions, fold_of_row, fold_ids, fit)
    final = optimise_weights(truth[fit], [p[fit] for p in predictions])

    oof = pd.DataFrame(nested_blend(predictions, fold_of_row, per_fold), columns=targets)
    oof.insert(0, schema.ID, first.oof[schema.ID].to_numpy())
    scores, _ = score_oof(labels, first.folds, oof, targets, *new_drugs)
    member_scores = {}
    for name, r in zip(names, runs):
        member_scores[name] = headline_scores(score_oof(labels, first.folds, r.oof, targets, *new_drugs)[0])
    scores["ensemble"] = {
        "method": WEIGHTS_METHOD,
        "members": member_scores,
        "weights_per_fold": {str(k): dict(zip(names, map(float, w))) for k, w in per_fold.items()},
        "weights": dict(zip(names, map(float, final))),
    }
    submission = None
    if all(r.submission is not None for r in runs):
        submission = weighted_average([r.submission for r in runs], final, files.SUBMISSION, [r.path for r in runs])
    members = [BlendMember(f"{files.MEMBERS}/{n}", float(w)) for n, w in zip(names, final)]
    manifest = replace(
        first.run.manifest().with_folds(scores["folds"]),
        seeds=[], clip=None, members=members, final_model="fold_average", refit_seeds=[],
    )
    return {"source": first, "manifest": manifest, "oof": oof, "submission": submission, "scores": scores}


def train_ensemble(cfg: DictConfig, train_member: Callable[[DictConfig], float], overrides: list[str]) -> float:
    """``cfg``: checked by train (``settings.check_config``: the members'
    model settings as ``ensemble.models.<name>.*``); ``overrides``: the
    command line's ``key=value`` arguments."""
    timer = PhaseTimer()
    metric = cfg.optimized_metric
    cv = typed(cfg.cv, CVSettings)
    if len(cv.fold_ids) < 2:
        raise MoAError(
            f"cv.folds={cv.folds}: an ensemble fits each fold's blend weights on the other folds' OOF predictions; "
            "expected at least two folds"
        )
    run = RunDir(Path(str(cfg.paths.output_dir)))
    # Before anything is written: the members' folders lie inside this one.
    check_apart_from_data(run.path, None if cfg.data.get("dir") is None else str(cfg.data.dir), "paths.output_dir")
    members = member_configs(cfg, run)
    names = list(members)
    with run.claimed("hydra.run.dir", bool(cfg.get("resume", False))) as resuming:
        run.start(OmegaConf.to_container(cfg, resolve=True), resuming)
        for name, member in members.items():
            log.info("ensemble: training member %s into %s", name, member.paths.output_dir)
            with timer(f"member {name}"):
                train_member(member)
        with timer("blend"):
            blended = blend_members(run, names)
        scores = blended["scores"]
        source = blended["source"]
        scores["seeds"] = [int(s) for s in cfg.seeds]
        scores["data"] = source.run.data_fingerprint()
        scores["timings_s"] = timer.summary()
        scores["wall_time_s"] = scores["timings_s"]["total"]
        untrusted = untrusted_reasons(cfg, scores, run.path, [], cv.fold_ids)
        scores["untrusted"] = untrusted
        write_combined(run, source.run, blended["manifest"], source.folds, blended["oof"], blended["submission"], scores)
        build_report(run.path)
        shown = ", ".join(f"{n} {w:.3f}" for n, w in scores["ensemble"]["weights"].items())
        print(
            f"Ensemble (nested) {score_line(scores, prior=True)}; weights fitted on all folds: {shown}; "
            f"{scores['wall_time_s']:.0f} s\n"
            f"Outputs: {run.path}",
            flush=True,
        )
        end_untrusted_run(untrusted, run.path, bool(cfg.get("allow_worse_than_prior", False)), log)
        return optimized_score(scores, metric)
