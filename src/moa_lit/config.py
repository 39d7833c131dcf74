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


def composed(overrides: list[str], config_name: str = "train"):
    """A command line's config as Hydra composes it from :data:`CONFIG_DIR`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR):
            return compose(config_name=config_name, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def compose_checked(overrides: list[str], config_name: str = "train"):
    """A command line's composed config, its settings checked (a refusal is a
    MoAError line), for tools that start many runs (benchmarks)."""
    from moa_lit.errors import MoAError
    from moa_lit.settings import SCHEMAS, check_config

    try:
        cfg = composed(overrides, config_name)
    except Exception as exc:
        line = hydra_error(exc, overrides)
        if line is None:
            raise
        raise MoAError(line) from None
    check_config(cfg, SCHEMAS[config_name])
    return cfg


# -- docs/configuration.md, generated from the settings' declarations ------------------------------


def _comments(cls: type) -> dict[str, str]:
    """Each field's comment in the class's source: on its line, or the lines just above it."""
    import inspect
    import re

    comments, above = {}, []
    for line in inspect.getsource(cls).splitlines()[1:]:
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("# "))
            continue
        field_line = re.match(r"(\w+)\s*:[^=]*=[^#]*(?:#\s*(.*))?$", text)
        comment = " ".join(above + ([field_line.group(2)] if field_line and field_line.group(2) else []))
        if field_line and comment and not text.startswith(("_", "key:")):
            comments[field_line.group(1)] = comment
        above = []
    return comments


REFERENCE_TARGETS = (  # (the node, the group choice that builds it)
    ("data", "data=synthetic"),
    ("data", "data=kaggle"),
    ("model", "model=mlp"),
    ("model.net", "model=mlp"),
    ("model.net", "model=resnet"),
    ("model.net", "model=cnn1d"),
    ("model.net", "model=linear"),
    ("model.net", "model=tabm"),
)
TRAINER_COMMENTS = {
    "check_val_every_n_epoch": "at most trainer.max_epochs: each fold's best epoch is chosen on validation",
    "precision": "the batches are float32 tensors: 64-true and 16-true fail inside a layer",
}
HEADER = ["| key | type | default | allowed | what it does |", "|---|---|---|---|---|"]


def reference_markdown() -> str:
    """docs/configuration.md, from the settings' declarations, the classes the
    configs build and the shipped defaults."""
    from dataclasses import fields

    from omegaconf import OmegaConf

    from moa_lit.settings import SCHEMAS, TRAINER_NEEDS, groups, shown, target_constraints

    def rows(cfg, prefix, constraints, comments, keys):
        found, raw = [], OmegaConf.to_container(cfg, resolve=False)  # ${now:...} shown, not the time it is
        for name in keys:
            value = raw
            for part in f"{prefix}{name}".split("."):
                value = value.get(part, "<unset>") if isinstance(value, dict) else "<unset>"
            default = "required" if value == "???" else "unset" if value == "<unset>" else f"`{shown(value)}`"
            kind, allowed = (c.kind, c.describe()) if (c := constraints.get(name)) else ("any", "")
            found.append(f"| `{prefix}{name}` | {kind} | {default} | {allowed} | {comments.get(name, '')} |")
        return found

    def schema_rows(cfg, schema, prefix=""):
        nested, comments, constraints = groups(schema), _comments(schema), schema._parameter_constraints
        keys = [f.name for f in fields(schema) if f.name not in nested and (f.name in constraints or f.name in comments)]
        found = rows(cfg, prefix, constraints, comments, keys)
        for name, group in nested.items():
            found += schema_rows(cfg, group, f"{prefix}{name}.")
        return found

    out = [
        "# Configuration reference",
        "",
        "Generated by `python -m moa_lit.config > docs/configuration.md` from the typed settings",
        "(`src/moa_lit/settings.py`), the classes the configs build and the shipped defaults;",
        "`tests/test_settings_docs.py` fails when this file differs. Every value is checked once when",
        "a command starts: a value outside *allowed* is one line `moa-lit: error: key=value: expected ...`",
        "and exit status 2. Arguments of torch, Lightning and scikit-learn not listed here are checked by",
        "those libraries (their refusal is one line naming the setting); their true/false arguments (read",
        "from the class's signature) must be true or false (or null where the library allows None).",
    ]
    for command, schema in SCHEMAS.items():
        cfg = composed([], command)
        out += ["", f"## `python -m moa_lit.{command}` (conf/{command}.yaml)", "", *HEADER, *schema_rows(cfg, schema)]
        if command != "train":
            continue
        for node, choice in REFERENCE_TARGETS:
            chosen = composed([choice])
            target = OmegaConf.select(chosen, f"{node}._target_")
            constraints, _ = target_constraints(target)
            out += ["", f"### `{node}` with {choice} (`{target}`)", "", *HEADER, *rows(chosen, f"{node}.", constraints, {}, constraints)]
        out += ["", "### `trainer` (Lightning's Trainer: what the fold loop needs; its other arguments are Lightning's)", "",
                *HEADER, *rows(cfg, "trainer.", TRAINER_NEEDS, TRAINER_COMMENTS, TRAINER_NEEDS)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # python -m moa_lit.config > docs/configuration.md
    print(reference_markdown(), end="")
