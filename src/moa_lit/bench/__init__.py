"""Benchmarks that print numbers (never timed tests): ``python -m moa_lit.bench``
for speed and memory, ``python -m moa_lit.bench.quality`` for the model
ablation, ``python -m moa_lit.bench.report`` for the run report's build time."""

from __future__ import annotations

import argparse


def refuse_counts_below_one(parser: argparse.ArgumentParser, args: argparse.Namespace, *options: str) -> None:
    """One line and exit 2 for a count option below 1 (``--epochs 0``), before any work."""
    for option in options:
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        if value is not None and value < 1:
            parser.error(f"{option} {value}: expected a whole number >= 1")
