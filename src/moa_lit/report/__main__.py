"""``python -m moa_lit.report run_dir=<training run folder>``: rebuild the run's
``report/`` from the files in that folder (no training data needed)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from moa_lit.errors import MoAError
from moa_lit.report.build import build_report
from moa_lit.cli import hydra_command
from moa_lit.settings import ReportConfig, check_config


def rebuild(cfg: DictConfig) -> Path:
    if OmegaConf.is_missing(cfg, "run_dir"):
        raise MoAError("run_dir is required: python -m moa_lit.report run_dir=<training run folder>")
    check_config(cfg, ReportConfig)
    path = build_report(Path(str(cfg.run_dir)).expanduser())
    print(f"Report: {path}", flush=True)
    return path


main = hydra_command("report", rebuild)


if __name__ == "__main__":
    main()
