"""Where the Hydra configs are: the repository's top-level ``conf/`` for an
editable install or a checkout, or the copy a wheel carries inside the package."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CANDIDATES = (_PACKAGE.parents[1] / "conf", _PACKAGE / "conf")

CONFIG_DIR = str(next((p for p in _CANDIDATES if (p / "train.yaml").is_file()), _CANDIDATES[0]))
