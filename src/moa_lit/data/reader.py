"""Read and check a folder in the Kaggle lish-moa layout (files plain, `.gz`
or `.zip`) before any training: anything unusable raises a one-line `MoAError`
naming the file, the column or row and what was expected; what is odd but
usable is logged as a warning on the `moa_lit.data` logger."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moa_lit.data import checks
from moa_lit.data.cache import cache_folder, cached_frame, content_sha1
from moa_lit.data.csvfile import find_source, parse_csv, read_header
from moa_lit.errors import MoAError
from moa_lit.schema import (
    CELL_PREFIX,
    CONTROL,
    CP_DOSE,
    CP_DOSES,
    CP_TIME,
    CP_TIMES,
    CP_TYPE,
    CP_TYPES,
    DRUG,
    GENE_PREFIX,
    ID,
    N_CELLS,
    N_GENES,
    SAMPLE_SUBMISSION,
    TEST_FEATURES,
    TRAIN_DRUG,
    TRAIN_FEATURES,
    TRAIN_TARGETS_NONSCORED,
    TRAIN_TARGETS_SCORED,
    FeatureLayout,
)

logger = logging.getLogger("moa_lit.data")

REQUIRED = (TRAIN_FEATURES, TRAIN_TARGETS_SCORED)
FILES = (*REQUIRED, TRAIN_TARGETS_NONSCORED, TRAIN_DRUG, TEST_FEATURES, SAMPLE_SUBMISSION)


@dataclass
class MoAData:
    """The validated contents of a data folder; every frame has a fresh RangeIndex
    and the target and drug rows are in train row order."""

    train: pd.DataFrame  # sig_id, cp_type, cp_time (int64), cp_dose, g-*, c-* (float32)
    scored: pd.DataFrame  # scored targets (int8 0/1), file column order, no sig_id
    nonscored: pd.DataFrame | None  # same for the non-scored targets; None if the file is absent
    drug: pd.Series | None  # drug_id per train row; None if train_drug.csv is absent
    test: pd.DataFrame | None  # test_features, same columns as train; None if absent
    sample_submission_columns: list[str] | None  # header of sample_submission.csv, if present
    layout: FeatureLayout
    fingerprint: dict  # {file name: {"file", "path", "bytes", "mtime_ns", "sha1"}, "rows", "test_rows", ...}
    # sample_submission.csv's sig_ids (text), the rows of submission.csv in
    # this order; None without the sample (or without test features).
    sample_submission_ids: pd.Series | None = None

    @property
    def scored_names(self) -> list[str]:
        return list(self.scored.columns)

    @property
    def train_is_control(self) -> np.ndarray:
        return (self.train[CP_TYPE] == CONTROL).to_numpy(dtype=bool)

    @property
    def test_is_control(self) -> np.ndarray | None:
        return None if self.test is None else (self.test[CP_TYPE] == CONTROL).to_numpy(dtype=bool)


def read_dataset(
    data_dir: str | Path,
    n_genes: int = N_GENES,
    n_cells: int = N_CELLS,
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> MoAData:
    """Read, check and align every file of a Kaggle-layout folder. `cache_dir=None`
    uses the default parse cache (see `cache.py`); `use_cache=False` parses every
    file afresh and writes nothing."""
    folder = Path(data_dir).expanduser()
    if not folder.exists():
        raise MoAError(
            f"data folder not found: {folder}; expected a folder with {TRAIN_FEATURES} and {TRAIN_TARGETS_SCORED}"
        )
    if not folder.is_dir():
        hint = " (unzip it first)" if folder.suffix == ".zip" else ""
        raise MoAError(f"data path is a file, not a folder: {folder}{hint}")
    if n_genes < 0 or n_cells < 0 or n_genes + n_cells == 0:
        raise MoAError(f"n_genes={n_genes}, n_cells={n_cells}: expected counts >= 0 with at least one feature")
    layout = FeatureLayout.kaggle(n_genes, n_cells)
    sources = {name: find_source(folder, name) for name in FILES}
    for name in REQUIRED:
        if sources[name] is None:
            raise MoAError(f"{name} not found in {folder} (nor {name}.gz or .zip); {_describe_folder(folder, name)}")
    cache = cache_folder(folder, cache_dir) if use_cache else None
    # Each file hashed once: the cache's key and the run's record of its data.
    digests = {name: content_sha1(path) for name, path in sources.items() if path is not None}

    def parsed(name: str, kind: str, parse) -> pd.DataFrame | None:
        path = sources[name]
        return None if path is None else cached_frame(cache, path, kind, digests[name], parse)

    def aligned(name: str, kind: str, parse) -> pd.DataFrame | None:
        """The file's values (no sig_id) in train row order; the same sig_ids as train's."""
        frame = parsed(name, kind, parse)
        return None if frame is None else checks.aligned(sources[name].name, frame, TRAIN_FEATURES, train[ID])

    features = f"features-g{n_genes}-c{n_cells}"
    train = parsed(TRAIN_FEATURES, features, lambda path: read_features(path, layout))
    scored = aligned(TRAIN_TARGETS_SCORED, "targets", read_targets)
    nonscored = aligned(TRAIN_TARGETS_NONSCORED, "targets", read_targets)
    drug = aligned(TRAIN_DRUG, "drug", read_drug)
    if drug is None:
        logger.warning(
            "%s not found in %s: folds cannot be drug-aware, so rows are stratified one by one "
            "(rows of one drug can land in both training and validation, and CV will read optimistic)",
            TRAIN_DRUG,
            folder,
        )
    test = parsed(TEST_FEATURES, features, lambda path: read_features(path, layout, like=TRAIN_FEATURES))
    columns, sample_ids = _read_sample_submission(sources, scored, test)

    drug = None if drug is None else drug[DRUG]
    data = MoAData(train, scored, nonscored, drug, test, columns, layout, fingerprint={}, sample_submission_ids=sample_ids)
    data.fingerprint = _fingerprint(sources, data, digests)
    _warn_about_oddities(data, sources)
    return data


def read_features(path: Path, layout: FeatureLayout, *, role: str | None = None, like: str | None = None) -> pd.DataFrame:
    """One features file, checked as `checked_features` says. `role` names it in
    messages (default: its name); `like`, the file whose columns it must have."""
    path = Path(path)
    role = role or path.name
    names = read_header(path, role)
    difference = checks.describe_difference(names, layout.columns)
    if like is not None and difference:
        raise MoAError(f"{role}: columns differ from {like}: {difference}; expected the same columns")
    checks.check_columns(role, names, layout.columns, hint=_layout_hint(names, layout))
    # cp_time is left to the parser, so that 24.5 or 'abc' reach its check instead of failing the parse.
    types = {**{name: "str" for name in (ID, CP_TYPE, CP_DOSE)}, **{name: "float32" for name in layout.numeric}}
    return checked_features(_parse_rows(path, role, names, types), layout, role=role)


def checked_features(raw: pd.DataFrame, layout: FeatureLayout, *, role: str) -> pd.DataFrame:
    """Feature rows (a parsed file, or a frame given to ``RunModel.predict_proba``)
    checked: columns in `layout` order, cp_time int64, g-*/c-* float32."""
    names = [str(name) for name in raw.columns]
    checks.check_columns(role, names, layout.columns, hint=_layout_hint(names, layout))
    raw = raw.reset_index(drop=True)
    ids = raw[ID]
    checks.check_ids(role, ids)
    checks.check_choice(role, CP_TYPE, raw[CP_TYPE], CP_TYPES, ids)
    # Compared as numbers, so 24.0 passes, and a bad cell shown as the file had it.
    times = pd.to_numeric(raw[CP_TIME], errors="coerce")
    checks.check_choice(role, CP_TIME, times.where(times.notna(), raw[CP_TIME]), CP_TIMES, ids)
    checks.check_choice(role, CP_DOSE, raw[CP_DOSE], CP_DOSES, ids)
    values = checks.numeric_matrix(role, raw, layout.numeric, expected="a float")
    checks.check_finite(role, values, layout.numeric, ids)

    meta = pd.DataFrame({ID: raw[ID], CP_TYPE: raw[CP_TYPE], CP_TIME: times.astype(np.int64), CP_DOSE: raw[CP_DOSE]})
    numbers = pd.DataFrame(values, columns=layout.numeric, copy=False)
    return pd.concat([meta, numbers], axis=1)


def read_targets(path: Path) -> pd.DataFrame:
    """One targets file, checked: sig_id then the targets (int8 0/1) in file order."""
    role = path.name
    names = read_header(path, role)
    checks.check_names(role, names)
    if ID not in names:
        raise MoAError(f"{role}: no {ID!r} column (found {checks.quoted(names)}); expected sig_id and the targets")
    targets = [name for name in names if name != ID]
    if not targets:
        raise MoAError(f"{role}: only a {ID!r} column; expected target columns after it")
    raw = _parse_rows(path, role, names, {ID: "str", **{name: "int8" for name in targets}})
    checks.check_ids(role, raw[ID])
    values = checks.numeric_matrix(role, raw, targets, expected="0 or 1")
    checks.check_binary(role, values, targets, raw[ID])
    return pd.concat([raw[[ID]], pd.DataFrame(values.astype(np.int8), columns=targets)], axis=1)


def read_drug(path: Path) -> pd.DataFrame:
    """train_drug.csv, checked: sig_id and drug_id, both present on every row."""
    role = path.name
    names = read_header(path, role)
    checks.check_columns(role, names, [ID, DRUG])
    raw = _parse_rows(path, role, names, {ID: "str", DRUG: "str"})
    checks.check_ids(role, raw[ID])
    missing = checks.is_blank(raw[DRUG])
    if missing.any():
        row = int(np.argmax(missing))
        raise MoAError(f"{role}: missing {DRUG} at {checks.where(raw[ID], row)}; expected a drug id on every row")
    return raw[[ID, DRUG]]


def _describe_folder(folder: Path, wanted: str) -> str:
    """What the folder holds, to show where the data really is."""
    entries = sorted(entry.name for entry in folder.iterdir() if not entry.name.startswith("."))
    if not entries:
        return "the folder is empty"
    # The usual slip: pointing at the parent of the unzipped lish-moa folder.
    nested = [name for name in entries if find_source(folder / name, wanted) is not None]
    if nested:
        return f"it is in {folder / nested[0]}: use that folder"
    shown = ", ".join(entries[:10]) + (f" and {len(entries) - 10} more" if len(entries) > 10 else "")
    return f"the folder holds: {shown}"


def _parse_rows(path: Path, role: str, names: list[str], types: dict[str, str]) -> pd.DataFrame:
    raw = parse_csv(path, role, names, types)
    if len(raw) == 0:
        raise MoAError(f"{role}: has a header but no data rows: {path}")
    return raw


def _layout_hint(names: list[str], layout: FeatureLayout) -> str:
    """Name the layout when gene/cell columns are the ones that do not fit."""
    odd = set(names) ^ set(layout.columns)
    if odd and all(name.startswith((GENE_PREFIX, CELL_PREFIX)) for name in odd):
        genes, cells = len(layout.genes), len(layout.cells)
        return f"expected {genes} {GENE_PREFIX}* and {cells} {CELL_PREFIX}* columns (n_genes={genes}, n_cells={cells})"
    return ""


def _read_sample_submission(
    sources: dict[str, Path | None], scored: pd.DataFrame, test: pd.DataFrame | None
) -> tuple[list[str] | None, pd.Series | None]:
    """The sample submission's header, sig_id then the scored targets in their
    order, and (with test features) its sig_ids: submission.csv's rows, in this
    order. Other ids than the test file's are refused: a submission must have a
    row for each of them, and the model only predicts the test file's."""
    path = sources[SAMPLE_SUBMISSION]
    if path is None:
        return None, None
    role = path.name
    names = read_header(path, role)
    checks.check_names(role, names)
    expected = [ID, *scored.columns]
    if names != expected:
        detail = checks.describe_difference(names, expected)
        if not detail:
            position = next(i for i, (a, b) in enumerate(zip(names, expected)) if a != b)
            detail = (
                f"same names in another order (column {position + 1} is {names[position]!r}, "
                f"expected {expected[position]!r})"
            )
        raise MoAError(f"{role}: columns differ from {ID} + the targets of {sources[TRAIN_TARGETS_SCORED].name}: {detail}")
    if test is None:
        return names, None
    ids = parse_csv(path, role, names, {ID: "str"})[ID].astype("str")
    checks.check_ids(role, ids)
    missing, extra = checks.id_difference(ids, test[ID])
    if len(missing) or len(extra):
        test_role = sources[TEST_FEATURES].name
        parts = [f"{len(extra)} not in {test_role} (e.g. {extra[0]})"] if len(extra) else []
        if len(missing):
            parts.append(f"{len(missing)} of {test_role} missing (e.g. {missing[0]})")
        raise MoAError(
            f"{role}: its {ID}s differ from {test_role}'s: {'; '.join(parts)}; expected the same samples "
            f"(a submission has one row per test sample; remove {role} to write the test file's rows)"
        )
    return names, ids


def _fingerprint(sources: dict[str, Path | None], data: MoAData, digests: dict[str, str]) -> dict:
    """What was read: each file's size, mtime and SHA-1, and the counts a run records."""
    files = {}
    for name, path in sources.items():
        if path is not None:
            stat = path.stat()
            files[name] = {
                "file": path.name,
                "path": str(path.resolve()),
                "bytes": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "sha1": digests[name],
            }
    return {
        **files,
        "rows": len(data.train),
        "test_rows": None if data.test is None else len(data.test),
        "n_scored": data.scored.shape[1],
        "n_nonscored": 0 if data.nonscored is None else data.nonscored.shape[1],
        "n_drugs": None if data.drug is None else int(data.drug.nunique()),
    }


def _warn_about_oddities(data: MoAData, sources: dict[str, Path | None]) -> None:
    """Log what is usable but probably not what the user meant."""
    scored_file = sources[TRAIN_TARGETS_SCORED].name
    empty = [name for name in data.scored.columns if not data.scored[name].any()]
    if empty:
        its = "its predictions" if len(empty) == 1 else "their predictions"
        logger.warning(
            "%s: %d scored target(s) have no positive (%s); %s will be near 0",
            scored_file,
            len(empty),
            checks.quoted(empty),
            its,
        )
    controls = data.train_is_control
    target_files = ((data.scored, sources[TRAIN_TARGETS_SCORED]), (data.nonscored, sources[TRAIN_TARGETS_NONSCORED]))
    for targets, path in target_files:
        if targets is None:
            continue
        positive = controls & targets.to_numpy().any(axis=1)
        if positive.any():
            example = data.train[ID].iloc[int(np.argmax(positive))]
            logger.warning(
                "%s: %d control row(s) (%s) have a positive target (e.g. sig_id %s); they are treated as no-MoA",
                path.name,
                int(positive.sum()),
                CONTROL,
                example,
            )
    if data.test is not None:
        train_ids = set(data.train[ID].to_numpy(dtype=object))
        shared = np.array([sig_id in train_ids for sig_id in data.test[ID].to_numpy(dtype=object)], dtype=bool)
        if shared.any():
            logger.warning(
                "%s: %d sig_id(s) also appear in %s (e.g. %s); test rows are expected to be new samples",
                sources[TEST_FEATURES].name,
                int(shared.sum()),
                TRAIN_FEATURES,
                data.test[ID].iloc[int(np.argmax(shared))],
            )
