"""``python -m moa_lit.train experiment=ensemble``: model families trained into
``members/<name>/`` on the same folds, blended with nested weights (docs/runs.md)."""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf, open_dict

from moa_lit.blend import blend_runs
from moa_lit.errors import MoAError
from moa_lit.run_checks import end_untrusted_run, untrusted_reasons
from moa_lit.runs import files
from moa_lit.runs.combine import write_combined
from moa_lit.runs.manifest import BlendMember
from moa_lit.runs.run_dir import RunDir, check_apart_from_data
from moa_lit.scoring.scores import optimized_score, score_line
from moa_lit.settings import typed
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
    """Each family's training config, into ``members/<name>/``. A member worse than
    the prior is kept (its weight says so); the ensemble's result is checked."""
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


def train_ensemble(cfg: DictConfig, train_member: Callable[[DictConfig], float], overrides: list[str]) -> float:
    """``cfg``: checked by train; ``overrides``: the command line's ``key=value`` arguments."""
    timer = PhaseTimer()
    metric = cfg.optimized_metric
    cv = typed(cfg, "cv")
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
            blended = blend_runs([run.member(n).path for n in names], nested=True)  # refuses members with other folds or rows
        source, scores = blended.runs[0], blended.scores
        scores["ensemble"] = {
            "method": WEIGHTS_METHOD,
            "members": dict(zip(names, blended.singles)),
            "weights_per_fold": {str(k): dict(zip(names, map(float, w))) for k, w in blended.per_fold.items()},
            "weights": dict(zip(names, map(float, blended.weights))),
        }
        scores["seeds"] = [int(s) for s in cfg.seeds]
        scores["data"] = source.run.read(files.DATA_FINGERPRINT, None)
        scores["timings_s"] = timer.summary()
        scores["wall_time_s"] = scores["timings_s"]["total"]
        untrusted = untrusted_reasons(cfg, scores, run.path, [], cv.fold_ids)
        scores["untrusted"] = untrusted
        members = [BlendMember(f"{files.MEMBERS}/{n}", float(w)) for n, w in zip(names, blended.weights)]
        manifest = replace(
            source.run.manifest().with_folds(scores["folds"]),
            seeds=[], clip=None, members=members, final_model="fold_average", refit_seeds=[],
        )
        write_combined(run, source.run, manifest, source.folds, blended.oof, blended.submission, scores)
        shown = ", ".join(f"{n} {w:.3f}" for n, w in scores["ensemble"]["weights"].items())
        print(
            f"Ensemble (nested) {score_line(scores, prior=True)}; weights fitted on all folds: {shown}; "
            f"{scores['wall_time_s']:.0f} s\n"
            f"Outputs: {run.path}",
            flush=True,
        )
        end_untrusted_run(untrusted, run.path, bool(cfg.get("allow_worse_than_prior", False)), log)
        return optimized_score(scores, metric)
