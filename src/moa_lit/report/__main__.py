"""``python -m moa_lit.report run_dir=<training run folder>``: rebuild the run's
``report/`` from the files in that folder (no training data needed)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from moa_lit.cli import hydra_command
from moa_lit.report.build import build_report


def rebuild(cfg: DictConfig) -> Path:
    # run_dir (required, a path) is checked by the command's schema before this runs.
    path = build_report(Path(str(cfg.run_dir)).expanduser())
    print(f"Report: {path}", flush=True)
    return path


main = hydra_command("report", rebuild)


if __name__ == "__main__":
    main()
