"""Where the Hydra configs are: the repository's top-level ``conf/`` for an
editable install or a checkout, or the copy a wheel carries inside the package."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CANDIDATES = (_PACKAGE.parents[1] / "conf", _PACKAGE / "conf")

CONFIG_DIR = str(next((p for p in _CANDIDATES if (p / "train.yaml").is_file()), _CANDIDATES[0]))


SAMPLER_GROUP = "hydra/sweeper/sampler"


def _sampler_choices() -> list[str]:
    """The Optuna samplers hydra-optuna-sweeper registers, less grid (refused by
    our sweeper) and motpe (kept by the plugin only to say Optuna 4 removed it)."""
    from hydra.core.config_store import ConfigStore

    import hydra_plugins.hydra_optuna_sweeper.config  # noqa: F401  (registers the sampler configs)

    names = (n.removesuffix(".yaml") for n in ConfigStore.instance().list(SAMPLER_GROUP))
    return sorted(n for n in names if n not in ("grid", "motpe"))


def unknown_group_choice(overrides: list[str], config_dir: str = CONFIG_DIR) -> str | None:
    """One line naming a command-line choice of a config group that has no file
    (``model=xyz``, ``experiment=xyz``), or None. Hydra's own report of it is a
    multi-line block; this check runs before Hydra so the user gets one line."""
    root = Path(config_dir)
    for arg in overrides:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if key == SAMPLER_GROUP and sep:
            options = _sampler_choices()
        elif not sep or "/" in key or "." in key or key == "hydra" or not (root / key).is_dir():
            continue
        else:
            options = sorted(p.stem for p in (root / key).glob("*.yaml"))
        if any(ch in value for ch in "()[]{}$"):
            continue  # Hydra sweep syntax: leave it to Hydra
        for choice in value.split(","):
            if choice and choice != "null" and choice not in options:
                return f"{key}={choice}: no such {key} config; expected one of {', '.join(options)}"
    return None
