"""Where the Hydra configs are (the repository's top-level ``conf/`` for an
editable install or a checkout, or the copy a wheel carries inside the
package), and Hydra's refusals of a command line as one line."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CANDIDATES = (_PACKAGE.parents[1] / "conf", _PACKAGE / "conf")

CONFIG_DIR = str(next((p for p in _CANDIDATES if (p / "train.yaml").is_file()), _CANDIDATES[0]))

# The entry configs' defaults lists name the typed schemas moa_lit.settings registers,
# so whatever composes from CONFIG_DIR (commands, tests, Hydra's compose API) has them.
import moa_lit.settings  # noqa: E402,F401


# Choices Hydra's plugins register that moa-lit does not offer: grid (refused
# by moa-lit's sweeper) and motpe (kept by the plugin only to say Optuna 4 removed it).
HIDDEN_CHOICES = {"hydra/sweeper/sampler": ("grid", "motpe")}


def hydra_error(exc: BaseException, overrides: list[str]) -> str | None:
    """Hydra's refusal of a command line (an unknown config choice, a bad
    override, a value or key its schema refuses, a folder it cannot make) as
    one line naming the setting, or None for anything else."""
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    from moa_lit import fs_errors
    from moa_lit.errors import MoAError
    from moa_lit.settings import shown

    if isinstance(exc, MoAError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in fs_errors.HANDLED_ERRNOS:
        return str(fs_errors.describe(exc))
    if isinstance(exc, ValueError) and str(exc).startswith("Config group override must be"):
        pass  # group=null: Hydra's defaults list refuses it naming no setting
    elif not isinstance(exc, (HydraException, OmegaConfBaseException)):
        return None
    cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options:
        group, _, choice = str(exc.missing_cfg_file).rpartition("/")
        options = [o for o in exc.options if o not in HIDDEN_CHOICES.get(group, ())]
        return f"{group}={choice}: no such {group} config; expected one of {', '.join(options)}"
    text = str(cause).strip()
    first = text.splitlines()[0] if text else type(cause).__name__
    if "NoneType" in text:  # group=null, which Hydra refuses naming no setting
        group = next((a.partition("=")[0] for a in overrides if a.endswith("=null") and (Path(CONFIG_DIR) / a.partition("=")[0]).is_dir()), None)
        if group:
            options = ", ".join(sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml")))
            return f"{group}=null: expected one of the {group} configs ({options}); to leave it out, write ~{group}"
    first = first.split(". Did you mean", 1)[0]
    if "execution whitelist" in first:  # Hydra's own refusal of a _target_ (its callbacks, say)
        first += " moa-lit builds only the classes listed in moa_lit/targets.py"
    key = getattr(cause, "full_key", None)
    if key and "not in" in first:  # an unknown key: the keys there are listed
        parent = getattr(cause, "parent_node", None)
        keys = [str(k) for k in parent.keys() if k != "hydra"] if parent is not None and hasattr(parent, "keys") else []
        first += f"; expected one of {', '.join(keys)}" if keys else ""
    if key and getattr(cause, "value", None) is not None:
        return f"{key}={shown(cause.value)}: {first}"
    return f"{key}: {first}" if key else first


def compose_checked(overrides: list[str], config_name: str = "train"):
    """A command line's composed config, its settings checked
    (``settings.check_config``); a refusal is a MoAError line. For tools that
    start many runs (benchmarks): a bad setting stops them before the first."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from moa_lit.errors import MoAError
    from moa_lit.settings import SCHEMAS, check_config

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR):
            cfg = compose(config_name=config_name, overrides=overrides)
    except Exception as exc:
        line = hydra_error(exc, overrides)
        if line is None:
            raise
        raise MoAError(line) from None
    finally:
        GlobalHydra.instance().clear()
    check_config(cfg, SCHEMAS[config_name])
    return cfg


if __name__ == "__main__":  # python -m moa_lit.config > docs/configuration.md
    print(moa_lit.settings.reference_markdown(CONFIG_DIR), end="")
