"""Benchmarks that print numbers (never timed tests): ``python -m moa_lit.bench``
for speed and memory, ``python -m moa_lit.bench.quality`` for the model
ablation, ``python -m moa_lit.bench.report`` for the run report's build time."""

from __future__ import annotations

import argparse
import functools
import sys


def refuse_counts_below_one(parser: argparse.ArgumentParser, args: argparse.Namespace, *options: str) -> None:
    """One line and exit 2 for a count option below 1 (``--epochs 0``), before any work."""
    for option in options:
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        if value is not None and value < 1:
            parser.error(f"{option} {value}: expected a whole number >= 1")


def one_line_errors(main):
    """Bad settings end a bench command as they end the training commands: one
    line and exit 2 (a moa-lit setting the data cannot satisfy, an override
    Hydra refuses, a full disk), not a traceback after the data is built."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        from moa_lit.cli import stop
        from moa_lit.config import hydra_error
        from moa_lit.errors import MoAError

        try:
            return main(*args, **kwargs)
        except Exception as exc:
            line = hydra_error(exc, sys.argv[1:])
            if line is None:
                raise
            stop(MoAError(line))

    return wrapped
