"""The run report: learning curves, per-target loss and calibration figures
plus report.md, written into every training run's ``report/`` folder."""

from moa_lit.report.build import build_report

__all__ = ["build_report"]
