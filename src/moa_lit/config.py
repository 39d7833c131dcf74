"""Where the Hydra configs are: the repository's top-level ``conf/`` for an
editable install or a checkout, or the copy a wheel carries inside the package."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CANDIDATES = (_PACKAGE.parents[1] / "conf", _PACKAGE / "conf")

CONFIG_DIR = str(next((p for p in _CANDIDATES if (p / "train.yaml").is_file()), _CANDIDATES[0]))

# conf/train.yaml's defaults list names the typed schema moa_lit.settings registers, so
# whatever composes from CONFIG_DIR (commands, tests, Hydra's compose API) has it.
import moa_lit.settings  # noqa: E402,F401


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


def _unknown_key_hint(err: BaseException) -> str:
    parent = getattr(err, "parent_node", None)
    keys = list(parent.keys()) if parent is not None and hasattr(parent, "keys") else []
    return f"; expected one of {', '.join(str(k) for k in keys)}" if keys else ""


def _table_error(overrides) -> str | None:
    """The first command-line value that :mod:`moa_lit.settings_check`'s table
    refuses, as it would say it (the typed schema alone would accept ``yes``
    or ``2`` for a boolean); interpolations are left to the composed config."""
    from moa_lit.settings_check import TRAIN, refusal

    for override in overrides:
        key = override.key_or_group
        if key not in TRAIN:
            continue
        value = override.value()
        if isinstance(value, str) and "${" in value:
            continue
        message = refusal(key, value, TRAIN[key])
        if message:
            return message
    return None


def compose_error(overrides: list[str], config_name: str = "train", config_dir: str = CONFIG_DIR) -> str | None:
    """One line naming a command-line setting that the config's schema refuses
    (a wrong type, an unknown key), or None. Hydra's own report is a multi-line
    block with exit status 1; this composes the config once before Hydra does.
    Sweep values (``a,b``, ``choice(...)``) and ``hydra`` settings are left to Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf.errors import OmegaConfBaseException

    candidates = [o for o in overrides if not o.startswith("-") and not o.lstrip("+~").startswith("hydra")]
    try:
        parsed = OverridesParser.create().parse_overrides(candidates)
    except Exception:
        return None  # Hydra's own message names the malformed override
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    if config_name == "train":
        refused = _table_error([o for o in parsed if not o.is_sweep_override() and not o.is_delete()])
        if refused:
            return refused
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir):
            cfg = compose(config_name=config_name, overrides=plain)
        if config_name == "train":
            # Settings that are valid alone but not together: refused here,
            # before Hydra makes the run folder, like every other setting.
            from moa_lit.settings_check import combination_error

            refused = combination_error(cfg, plain)
            if refused:
                return refused
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
        if "Got NoneType" in str(cause):  # group=null, which Hydra refuses naming no setting
            group = next((o.partition("=")[0] for o in plain if o.endswith("=null") and (Path(config_dir) / o.partition("=")[0]).is_dir()), None)
            if group:
                options = ", ".join(sorted(p.stem for p in (Path(config_dir) / group).glob("*.yaml")))
                return f"{group}=null: expected one of the {group} configs ({options}); to leave it out, write ~{group}"
        key = getattr(cause, "full_key", None)
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        # The last override of a key is the one in effect.
        override = next((o for o in reversed(plain) if key and o.lstrip("+~").partition("=")[0] == key), key or "the overrides")
        hint = ""
        if "not in" in first:
            # omegaconf >= 2.4 suggests a few close keys; the hint lists them all, on every version.
            first = first.split(". Did you mean", 1)[0]
            hint = _unknown_key_hint(cause)
        return f"{override}: {first}{hint}"
    finally:
        GlobalHydra.instance().clear()
    return None
