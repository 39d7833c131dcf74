"""Read and validate a folder in the Kaggle lish-moa layout, before any training.

`read_dataset` finds the files (plain, `.gz` or `.zip`), parses each one
(pyarrow, with pandas' C parser as fallback), checks it, lines the target and
drug rows up with the train rows and reports what is odd but usable as
warnings on the `moa_lit.data` logger. Anything unusable raises `MoAError`
with one line naming the file, the column or row, and what was expected.
All checks run before anything is returned, so training never starts on
bad input.

`read_features` is the same parse-and-check for one features file; the
predict command uses it on a user's new file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moa_lit.data import checks
from moa_lit.data.cache import ParseCache, content_sha1
import pyarrow as pa
import pyarrow.csv as pcsv

from moa_lit.data.csvfile import Header, find_source, open_bytes, parse_csv, read_header
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
OPTIONAL = (TRAIN_TARGETS_NONSCORED, TRAIN_DRUG, TEST_FEATURES, SAMPLE_SUBMISSION)
FEATURE_TEXT_COLUMNS = (ID, CP_TYPE, CP_DOSE)


def _feature_types(layout: FeatureLayout) -> dict[str, str]:
    """Parse types of a features file; cp_time is left to the parser so that
    24.5 or 'abc' reach the cp_time check instead of failing the parse."""
    return {**{name: "str" for name in FEATURE_TEXT_COLUMNS}, **{name: "float32" for name in layout.numeric}}


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
    def nonscored_names(self) -> list[str]:
        return [] if self.nonscored is None else list(self.nonscored.columns)

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
    require_nonscored: bool = False,
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> MoAData:
    """Read, check and align every file of a Kaggle-layout folder.

    `cache_dir=None` uses the default parse cache (see `cache.py`);
    `use_cache=False` parses every file afresh and writes nothing.
    """
    folder = _data_folder(data_dir)
    layout = _layout(n_genes, n_cells)
    sources = _locate(folder, require_nonscored)
    cache = ParseCache.for_data_dir(folder, cache_dir) if use_cache else ParseCache(None)
    features_kind = f"features-g{n_genes}-c{n_cells}"
    # Each file hashed once: the cache's key and the run's record of its data.
    digests = {path: content_sha1(path) for path in sources.values() if path is not None}

    train = cache.frame(
        sources[TRAIN_FEATURES], features_kind, lambda path: read_features(path, layout), digests[sources[TRAIN_FEATURES]]
    )
    ids = train[ID]
    scored = _read_aligned_targets(cache, sources[TRAIN_TARGETS_SCORED], ids, digests)
    nonscored = _read_aligned_targets(cache, sources[TRAIN_TARGETS_NONSCORED], ids, digests)
    drug = _read_aligned_drug(cache, sources[TRAIN_DRUG], ids, folder, digests)
    test = _read_test(cache, sources[TEST_FEATURES], layout, features_kind, digests)
    submission = _read_submission_columns(sources[SAMPLE_SUBMISSION], sources[TRAIN_TARGETS_SCORED], scored)
    sample_ids = None
    if submission is not None and test is not None:
        sample_ids = _read_submission_ids(sources[SAMPLE_SUBMISSION], test[ID], sources[TEST_FEATURES].name)

    data = MoAData(train, scored, nonscored, drug, test, submission, layout, fingerprint={}, sample_submission_ids=sample_ids)
    data.fingerprint = _fingerprint(sources, data, digests)
    _warn_about_oddities(data, sources)
    return data


def read_features(path: Path, layout: FeatureLayout, *, role: str | None = None) -> pd.DataFrame:
    """One features file, checked: columns in `layout` order, cp_time int64,
    g-*/c-* float32. `role` names the file in messages (default: its name)."""
    path = Path(path)
    role = role or path.name
    header = read_header(path, role)
    checks.check_columns(role, header.names, layout.columns, hint=_layout_hint(header.names, layout))
    return checked_features(_parse_rows(path, role, header, _feature_types(layout)), layout, role=role)


def checked_features(raw: pd.DataFrame, layout: FeatureLayout, *, role: str) -> pd.DataFrame:
    """Feature rows (a parsed file, or a frame given to ``RunModel.predict_proba``)
    checked as a features file is: columns in `layout` order, cp_time int64, g-*/c-* float32."""
    names = [str(name) for name in raw.columns]
    checks.check_columns(role, names, layout.columns, hint=_layout_hint(names, layout))
    raw = raw.reset_index(drop=True)
    ids = raw[ID]
    checks.check_ids(role, ids)
    checks.check_choice(role, CP_TYPE, raw[CP_TYPE], CP_TYPES, ids)
    # Compared as numbers, so 24.0 passes and 24.5 or 'abc' is named as found.
    times = pd.to_numeric(raw[CP_TIME], errors="coerce")
    checks.check_choice(role, CP_TIME, _shown_as_found(raw[CP_TIME], times), CP_TIMES, ids)
    checks.check_choice(role, CP_DOSE, raw[CP_DOSE], CP_DOSES, ids)
    values = checks.numeric_matrix(role, raw, layout.numeric, expected="a float", dtype=np.float32)
    checks.check_finite(role, values, layout.numeric, ids)

    meta = pd.DataFrame({ID: raw[ID], CP_TYPE: raw[CP_TYPE], CP_TIME: times.astype(np.int64), CP_DOSE: raw[CP_DOSE]})
    numbers = pd.DataFrame(values, columns=layout.numeric, copy=False)
    return pd.concat([meta, numbers], axis=1)


def read_targets(path: Path, *, role: str | None = None) -> pd.DataFrame:
    """One targets file, checked: sig_id then the targets (int8 0/1) in file order."""
    path = Path(path)
    role = role or path.name
    header = read_header(path, role)
    checks.check_named(role, header.names)
    checks.check_unique_names(role, header.names)
    if ID not in header.names:
        found = checks.quoted(header.names)
        raise MoAError(f"{role}: no {ID!r} column (found {found}); expected sig_id and the targets")
    targets = [name for name in header.names if name != ID]
    if not targets:
        raise MoAError(f"{role}: only a {ID!r} column; expected target columns after it")
    raw = _parse_rows(path, role, header, {ID: "str", **{name: "int8" for name in targets}})

    ids = raw[ID]
    checks.check_ids(role, ids)
    values = checks.numeric_matrix(role, raw, targets, expected="0 or 1", dtype=np.float32)
    checks.check_binary(role, values, targets, ids)
    labels = pd.DataFrame(values.astype(np.int8), columns=targets)
    return pd.concat([ids.to_frame(), labels], axis=1)


def read_drug(path: Path, *, role: str | None = None) -> pd.DataFrame:
    """train_drug.csv, checked: sig_id and drug_id, both present on every row."""
    path = Path(path)
    role = role or path.name
    header = read_header(path, role)
    checks.check_columns(role, header.names, [ID, DRUG])
    raw = _parse_rows(path, role, header, {ID: "str", DRUG: "str"})
    checks.check_ids(role, raw[ID])
    missing = checks.is_blank(raw[DRUG])
    if missing.any():
        row = int(np.argmax(missing))
        raise MoAError(f"{role}: missing {DRUG} at {checks.where(raw[ID], row)}; expected a drug id on every row")
    return raw[[ID, DRUG]]


# -- folder and files ------------------------------------------------------------------


def _data_folder(data_dir: str | Path) -> Path:
    folder = Path(data_dir).expanduser()
    if not folder.exists():
        raise MoAError(
            f"data folder not found: {folder}; expected a folder with {TRAIN_FEATURES} and {TRAIN_TARGETS_SCORED}"
        )
    if not folder.is_dir():
        hint = " (unzip it first)" if folder.suffix == ".zip" else ""
        raise MoAError(f"data path is a file, not a folder: {folder}{hint}")
    return folder


def _layout(n_genes: int, n_cells: int) -> FeatureLayout:
    if n_genes < 0 or n_cells < 0 or n_genes + n_cells == 0:
        raise MoAError(f"n_genes={n_genes}, n_cells={n_cells}: expected counts >= 0 with at least one feature")
    return FeatureLayout.kaggle(n_genes, n_cells)


def _locate(folder: Path, require_nonscored: bool) -> dict[str, Path | None]:
    """Each known file's path (plain, .gz or .zip) or None; a required one must exist."""
    sources = {name: find_source(folder, name) for name in (*REQUIRED, *OPTIONAL)}
    required = [*REQUIRED, *([TRAIN_TARGETS_NONSCORED] if require_nonscored else [])]
    for name in required:
        if sources[name] is None:
            raise MoAError(f"{name} not found in {folder} (nor {name}.gz or .zip); {_describe_folder(folder, name)}")
    return sources


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


def _parse_rows(path: Path, role: str, header: Header, types: dict[str, str]) -> pd.DataFrame:
    raw = parse_csv(path, role, header, types)
    if len(raw) == 0:
        raise MoAError(f"{role}: has a header but no data rows: {path}")
    return raw


def _layout_hint(names: list[str], layout: FeatureLayout) -> str:
    """Name the layout when gene/cell columns are the ones that do not fit."""
    odd = [name for group in checks.column_difference(names, layout.columns) for name in group]
    if odd and all(name.startswith((GENE_PREFIX, CELL_PREFIX)) for name in odd):
        genes, cells = len(layout.genes), len(layout.cells)
        return f"expected {genes} {GENE_PREFIX}* and {cells} {CELL_PREFIX}* columns (n_genes={genes}, n_cells={cells})"
    return checks.header_hint(names)


def _shown_as_found(raw: pd.Series, numbers: pd.Series) -> pd.Series:
    """cp_time compared as a number, but a bad cell shown as the file had it."""
    return numbers.where(numbers.notna(), raw)


# -- the other files, lined up with train ----------------------------------------------


def _read_aligned_targets(
    cache: ParseCache, path: Path | None, train_ids: pd.Series, digests: dict[Path, str]
) -> pd.DataFrame | None:
    if path is None:
        return None
    frame = cache.frame(path, "targets", read_targets, digests.get(path))
    checks.check_same_ids(path.name, frame[ID], TRAIN_FEATURES, train_ids)
    return checks.align_rows(frame.drop(columns=ID), frame[ID], train_ids)


def _read_aligned_drug(
    cache: ParseCache, path: Path | None, train_ids: pd.Series, folder: Path, digests: dict[Path, str]
) -> pd.Series | None:
    if path is None:
        logger.warning(
            "%s not found in %s: folds cannot be drug-aware, so rows are stratified one by one "
            "(rows of one drug can land in both training and validation, and CV will read optimistic)",
            TRAIN_DRUG,
            folder,
        )
        return None
    frame = cache.frame(path, "drug", read_drug, digests.get(path))
    checks.check_same_ids(path.name, frame[ID], TRAIN_FEATURES, train_ids)
    return checks.align_rows(frame[DRUG], frame[ID], train_ids)


def _read_test(
    cache: ParseCache, path: Path | None, layout: FeatureLayout, kind: str, digests: dict[Path, str]
) -> pd.DataFrame | None:
    if path is None:
        return None
    names = read_header(path, path.name).names
    missing, extra = checks.column_difference(names, layout.columns)
    if missing or extra:
        difference = checks.describe_difference(missing, extra)
        raise MoAError(f"{path.name}: columns differ from {TRAIN_FEATURES}: {difference}; expected the same columns")
    return cache.frame(path, kind, lambda source: read_features(source, layout), digests.get(path))


def _read_submission_columns(path: Path | None, scored_path: Path, scored: pd.DataFrame) -> list[str] | None:
    """The sample submission's header: sig_id then the scored targets, same order."""
    if path is None:
        return None
    role = path.name
    names = read_header(path, role).names
    checks.check_named(role, names)
    checks.check_unique_names(role, names)
    expected = [ID, *scored.columns]
    if names == expected:
        return names
    missing, extra = checks.column_difference(names, expected)
    if missing or extra:
        detail = checks.describe_difference(missing, extra)
    else:
        position = next(i for i, (a, b) in enumerate(zip(names, expected)) if a != b)
        detail = (
            f"same names in another order (column {position + 1} is {names[position]!r}, "
            f"expected {expected[position]!r})"
        )
    raise MoAError(f"{role}: columns differ from {ID} + the targets of {scored_path.name}: {detail}")


def _read_submission_ids(path: Path, test_ids: pd.Series, test_role: str) -> pd.Series:
    """The sample submission's sig_ids, as text, which must be the test file's
    (in any order: submission.csv then follows the sample's order). Different
    ids are refused: a submission must have a row for each of them, and the
    model only predicts the test file's."""
    role = path.name
    header = read_header(path, role)
    raw_id = header.raw[header.names.index(ID)]
    options = pcsv.ConvertOptions(include_columns=[raw_id], column_types={raw_id: pa.string()})
    try:
        with open_bytes(path, role) as stream:
            ids = pcsv.read_csv(stream, convert_options=options).column(0).to_pandas()
    except (pa.ArrowException, OSError, EOFError) as err:
        reason = " ".join(str(err).split())[:200]
        raise MoAError(f"{role}: cannot read its {ID} column ({reason}): {path}") from None
    ids = ids.astype("str").rename(ID)
    checks.check_ids(role, ids)
    missing = ~test_ids.isin(ids)
    extra = ~ids.isin(test_ids)
    if missing.any() or extra.any():
        parts = []
        if extra.any():
            parts.append(f"{int(extra.sum())} not in {test_role} (e.g. {ids[extra].iloc[0]})")
        if missing.any():
            parts.append(f"{int(missing.sum())} of {test_role} missing (e.g. {test_ids[missing].iloc[0]})")
        raise MoAError(
            f"{role}: its {ID}s differ from {test_role}'s: {'; '.join(parts)}; expected the same samples "
            f"(a submission has one row per test sample; remove {role} to write the test file's rows)"
        )
    return ids.reset_index(drop=True)


# -- report ----------------------------------------------------------------------------


def _fingerprint(sources: dict[str, Path | None], data: MoAData, digests: dict[Path, str]) -> dict:
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
                "sha1": digests[path],
            }
    return {
        **files,
        "rows": len(data.train),
        "test_rows": None if data.test is None else len(data.test),
        "n_scored": data.scored.shape[1],
        "n_nonscored": 0 if data.nonscored is None else data.nonscored.shape[1],
        "n_drugs": None if data.drug is None else int(data.drug.nunique()),
    }


def with_content_hashes(fingerprint: dict) -> dict:
    """The fingerprint with each source file's SHA-1, which a run records so its
    data can be identified later; ``read_dataset`` already hashed each file
    (the parse cache's key), so only a fingerprint made elsewhere is hashed here."""
    out = dict(fingerprint)
    for name, entry in fingerprint.items():
        if isinstance(entry, dict) and entry.get("path") and not entry.get("sha1"):
            out[name] = {**entry, "sha1": content_sha1(Path(entry["path"]))}
    return out


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
