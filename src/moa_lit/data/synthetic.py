"""A synthetic stand-in for the lish-moa data, written in the exact Kaggle layout.

It is the project's built-in default dataset, so the same reader, folds, features
and models run on it as on the real files, which cannot reach the machines
moa-lit is developed on. What it models and why: docs/synthetic.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from moa_lit import schema
from moa_lit.data.reader import FILES
from moa_lit.errors import MoAError

LOG = logging.getLogger("moa_lit.data.synthetic")

# Bump when the generator changes so cached folders are not reused across versions.
FORMAT_VERSION = 2
# How labels shape the features (docs/synthetic.md); the default first.
VARIANTS = ("saturating", "additive", "interaction")
DEFAULT_VARIANT = VARIANTS[0]
# Written for benchmarks only, in a folder the training reader never opens: the
# scored labels and drug ids of the test rows (drugs absent from training).
BENCHMARK_DIR = "benchmark_only"
HELDOUT_TARGETS = "test_targets_scored.csv"
HELDOUT_DRUG = "test_drug.csv"
BENCHMARK_FILES = (f"{BENCHMARK_DIR}/{HELDOUT_TARGETS}", f"{BENCHMARK_DIR}/{HELDOUT_DRUG}")
MANIFEST = "manifest.json"
# The six Kaggle files the reader knows, the training set's four first (generate relies on it).
FILE_NAMES = FILES


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. Defaults give the size of the real training set."""

    n_samples: int = 23814  # train rows
    seed: int = 0
    n_genes: int = 772
    n_cells: int = 100
    n_scored: int = 206
    n_nonscored: int = 402
    test_fraction: float = 3982 / 23814  # test rows relative to train rows
    control_fraction: float = 1866 / 23814  # ctl_vehicle rows, train and test
    # Scale of the mechanism responses in g-* relative to unit noise (docs/synthetic.md).
    signal_strength: float = 1.0
    # Share of drugs whose potency is ~10x lower: labelled but nearly silent.
    inactive_fraction: float = 0.25
    # Scale of each drug's own off-target response, relative to a mechanism.
    drug_offset_scale: float = 0.6
    # Degrees of freedom of the Student-t noise on g-* (lower: heavier tails).
    noise_df: float = 6.0
    variant: str = "saturating"
    # Rows of every ordinary drug (controls and the frequent drugs keep theirs);
    # 0: the real replicate counts (mostly 6).
    rows_per_drug: int = 0


# ---------------------------------------------------------------- facts reused
# Rows of the nine frequent treated drugs as shares of the real training set.
_FREQUENT_ROW_SHARES = np.array([718, 246, 203, 202, 196, 194, 186, 178, 19]) / 23814
# Replicate counts of ordinary drugs and how many real drugs have each (a drug
# with 5 or 7 rows lost or repeated one dose x time cell).
_REPLICATE_SIZES = np.array([1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 14, 18])
_REPLICATE_COUNTS = np.array([129, 3, 2, 3, 66, 2774, 196, 4, 4, 64, 25, 6, 3])
_REPLICATE_PROBS = _REPLICATE_COUNTS / _REPLICATE_COUNTS.sum()
# What an ordinary treated drug carries: scored labels, only non-scored, or none.
_P_SCORED, _P_NONSCORED_ONLY = 0.62, 0.19
# Scored drugs that also carry non-scored labels, and how many. On the real labels
# only 753 rows (118 drugs) carry both kinds, and 235 of the 206 x 402
# scored/non-scored pairs ever meet on a row, most of them on a single drug.
_P_EXTRA_NONSCORED = 0.06
_N_EXTRA_NONSCORED = (np.array([1, 2, 3, 4]), np.array([0.72, 0.16, 0.08, 0.04]))
_N_SCORED_LABELS = (np.array([1, 2, 3, 4, 5]), np.array([0.902, 0.067, 0.02, 0.007, 0.004]))
_N_NONSCORED_LABELS = (np.array([1, 2, 3]), np.array([0.9, 0.08, 0.02]))
_EMPTY_NONSCORED_SHARE = 71 / 402
_DOSE_STRENGTH = np.array([0.6, 1.0])  # D1, D2
_TIME_STRENGTH = np.array([0.55, 0.8, 1.0])  # 24, 48, 72 h
# Real training counts: cp_dose D1 12,147 / D2 11,667; cp_time 7,772 / 8,250 / 7,792.
_DOSE_SHARES = np.array([12147, 11667]) / 23814
_TIME_SHARES = np.array([7772, 8250, 7792]) / 23814
# Feature scales, calibrated at full size so that per-column statistics fall in
# the real file's ranges (tests/test_synthetic.py states the tolerances).
_NOISE_SCALE = 0.7  # g-* noise; real per-column quartiles are near -0.5 and 0.5
_CELL_NOISE = 0.65  # c-* noise of each cell line
_STRESS = 7.0  # g-* movement of a row whose cells all die
_BROAD = 1.0  # off-target response on every gene, relative to the programs
_THRESHOLD = 0.3  # saturating variant: strength at which a response starts

# ---------------------------------------------------------------- target names
_NOUNS = (
    "proteasome nfkb tubulin hsp topoisomerase cdk hdac mtor pi3k egfr "
    "dna_synthesis rna_polymerase aurora_kinase plk atpase bcl "
    "adrenergic_receptor dopamine_receptor serotonin_receptor histamine_receptor "
    "acetylcholine_receptor glutamate_receptor gaba_receptor opioid_receptor "
    "cannabinoid_receptor adenosine_receptor estrogen_receptor androgen_receptor "
    "glucocorticoid_receptor progesterone_receptor retinoid_receptor ppar "
    "calcium_channel sodium_channel potassium_channel chloride_channel "
    "cyclooxygenase lipoxygenase phosphodiesterase carbonic_anhydrase "
    "acetylcholinesterase monoamine_oxidase hmgcr xanthine_oxidase "
    "angiotensin_receptor bradykinin_receptor leukotriene_receptor "
    "prostaglandin_receptor thromboxane_receptor vegfr pdgfr fgfr kit flt3 "
    "jak src abl raf mek erk p38_mapk jnk akt pkc rho_kinase gsk "
    "tyrosine_kinase parp atm_kinase chk wee1 bromodomain dnmt "
    "histone_lysine_methyltransferase sirtuin hif proton_pump "
    "dihydrofolate_reductase thymidylate_synthase ribonucleotide_reductase "
    "purine_antagonist_target bacterial_cell_wall bacterial_dna_gyrase "
    "bacterial_30s_ribosome bacterial_50s_ribosome fungal_ergosterol "
    "antiviral_protease integrin tlr nitric_oxide_synthase aldose_reductase "
    "vitamin_d_receptor insulin_sensitiser sigma_receptor melatonin_receptor "
    "orexin_receptor"
).split()
_ACTIONS = ("inhibitor", "antagonist", "agonist", "blocker", "activator",
            "modulator", "ligand", "stimulant")
# Names that exist whenever there are enough scored targets: the frequent drugs
# and the toxic mechanisms refer to them.
_ANCHORS = ("proteasome_inhibitor", "nfkb_inhibitor", "tubulin_inhibitor",
            "hsp_inhibitor", "cdk_inhibitor", "topoisomerase_inhibitor",
            "hdac_inhibitor", "mtor_inhibitor", "egfr_inhibitor")
# Mechanisms on these targets kill cells: viability falls with them.
_TOXIC_NOUNS = ("proteasome", "tubulin", "hsp", "topoisomerase", "cdk", "hdac",
                "dna_synthesis", "rna_polymerase", "aurora_kinase", "plk", "atpase",
                "bcl", "thymidylate_synthase", "ribonucleotide_reductase", "wee1")
_NAME_SEED = 20200903  # fixed: names do not depend on the data seed


def target_names(n_scored: int, n_nonscored: int) -> tuple[list[str], list[str]]:
    """Unique, deterministic target names (independent of the seed): scored and
    non-scored are disjoint, each sorted like the real files' columns."""
    catalogue = [f"{noun}_{action}" for noun in _NOUNS for action in _ACTIONS]
    if n_scored + n_nonscored > len(catalogue):
        raise MoAError(
            f"synthetic data: n_scored + n_nonscored must be at most {len(catalogue)}, "
            f"got {n_scored} + {n_nonscored}"
        )
    order = np.random.default_rng(_NAME_SEED).permutation(len(catalogue))
    rest = [catalogue[i] for i in order if catalogue[i] not in _ANCHORS]
    ordered = [*_ANCHORS, *rest]
    return sorted(ordered[:n_scored]), sorted(ordered[n_scored:n_scored + n_nonscored])


def is_toxic_mechanism(name: str) -> bool:
    """Whether a target name is one of the cell-killing mechanisms (viability falls)."""
    return any(name.startswith(noun + "_") for noun in _TOXIC_NOUNS)


# ---------------------------------------------------------------- mechanisms
@dataclass
class _Mechanisms:
    """All targets, scored first: popularity, signatures, toxicity."""

    scored: list[str]
    nonscored: list[str]
    weight: np.ndarray  # (M,) label popularity
    core: np.ndarray  # (M, G) the one signature of a target (additive, interaction)
    signature: np.ndarray  # (M, 4, G) gene response per chemical class (saturating)
    n_subtypes: np.ndarray  # (M,) 1..4
    toxicity: np.ndarray  # (M,) 0 for non-toxic mechanisms
    cell_sensitivity: np.ndarray  # (M, C) multiplies toxicity per cell line
    stress: np.ndarray  # (G,) response shared by dying cells, on every gene
    programs: np.ndarray  # (K, G) shared gene programs
    gene_response: np.ndarray  # (G,) how strongly each gene responds to anything
    noise_scale: np.ndarray  # (G,) per-gene scale of the measurement noise
    # variant "interaction": extra signatures switched by time and dose, and
    # cell-line patterns that show at the high dose.
    time_signature: np.ndarray  # (M, G)
    dose_signature: np.ndarray  # (M, G)
    cell_pattern: np.ndarray  # (M, C)


def _sparse_vectors(rng: np.random.Generator, n: int, dim: int, n_active: int) -> np.ndarray:
    """n vectors with n_active N(0,1) entries each at random positions, zero elsewhere."""
    out = np.zeros((n, dim))
    n_active = max(1, min(n_active, dim))
    for i in range(n):
        idx = rng.choice(dim, size=n_active, replace=False)
        out[i, idx] = rng.standard_normal(n_active)
    return out


def _unit_rms(x: np.ndarray) -> np.ndarray:
    """Scale rows so the entries' RMS over non-zero entries is 1 (per-gene effect ~1)."""
    nnz = np.maximum((x != 0).sum(axis=-1, keepdims=True), 1)
    norm = np.sqrt((x**2).sum(axis=-1, keepdims=True) / nnz)
    return x / np.maximum(norm, 1e-12)


def _build_mechanisms(cfg: SyntheticConfig, rng: np.random.Generator) -> _Mechanisms:
    scored, nonscored = target_names(cfg.n_scored, cfg.n_nonscored)
    n_s, n_m, g, c = cfg.n_scored, cfg.n_scored + cfg.n_nonscored, cfg.n_genes, cfg.n_cells
    gene_block = max(4, g // 20)  # genes per program / own genes per mechanism

    # Popularity: log-normal, so a few targets are common and many are rare.
    # Non-scored ones vary less: most have one or two drugs, none is very common.
    weight = np.concatenate([rng.lognormal(0.0, 1.2, size=n_s), rng.lognormal(0.0, 0.7, size=n_m - n_s)])
    weight[n_s:][rng.random(n_m - n_s) < _EMPTY_NONSCORED_SHARE] = 0.0

    # Signatures: two shared programs + genes of its own, per mechanism.
    n_programs = max(4, n_m // 15)
    programs = _unit_rms(_sparse_vectors(rng, n_programs, g, 2 * gene_block))
    mix = np.zeros((n_m, n_programs))
    for i in range(n_m):
        mix[i, rng.choice(n_programs, size=2, replace=False)] = rng.normal(0, 1, 2)
    core = _unit_rms(0.6 * _unit_rms(mix @ programs) + _sparse_vectors(rng, n_m, g, gene_block))
    # About 40% of non-scored mechanisms are variants of a scored parent.
    for j in np.flatnonzero(rng.random(n_m - n_s) < 0.4) + n_s:
        core[j] = _unit_rms(0.6 * core[rng.integers(n_s)] + 0.8 * core[j])

    # Chemical classes (sub-types) share only part of the core; each adds a
    # response of its own. Only the saturating variant uses more than one.
    n_subtypes = rng.choice([1, 2, 3, 4], size=n_m, p=[0.15, 0.35, 0.3, 0.2])
    own = _unit_rms(_sparse_vectors(rng, n_m * 4, g, gene_block)).reshape(n_m, 4, g)
    shared = np.where(n_subtypes[:, None] == 1, 1.0, 0.5)  # single class: pure core
    signature = _unit_rms(shared[:, :, None] * core[:, None, :]
                          + np.sqrt(1 - shared**2)[:, :, None] * own)

    toxic = np.array([is_toxic_mechanism(n) for n in [*scored, *nonscored]], dtype=bool)
    toxicity = np.where(toxic, rng.uniform(0.6, 2.0, size=n_m), 0.0)
    base_sensitivity = rng.uniform(0.5, 1.5, size=c)  # some cell lines are frail
    cell_sensitivity = base_sensitivity * rng.lognormal(0.0, 0.4, size=(n_m, c))

    # Genes differ in how far they move (the real per-column std runs from 0.58
    # to 2.26) and, less, in their noise level (the real quartiles are tight).
    gene_response = rng.lognormal(0.0, 0.33, size=g)
    noise_scale = _NOISE_SCALE * rng.lognormal(0.0, 0.06, size=g)
    # Dying cells move every gene, some a lot: a response shared by all dying
    # cells (and the drug's own, see _features).
    stress = rng.standard_normal(g) * gene_response

    time_signature = _unit_rms(_sparse_vectors(rng, n_m, g, gene_block))
    dose_signature = _unit_rms(_sparse_vectors(rng, n_m, g, gene_block))
    cell_pattern = _sparse_vectors(rng, n_m, c, max(1, c // 10)) ** 2
    return _Mechanisms(scored, nonscored, weight, core, signature, n_subtypes, toxicity,
                       cell_sensitivity, stress, programs, gene_response, noise_scale,
                       time_signature, dose_signature, cell_pattern)


# ---------------------------------------------------------------- drugs
_CONTROL, _FREQUENT, _REGULAR = 0, 1, 2


def _drug_sizes(n_rows: int, frequent: bool, cfg: SyntheticConfig,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows per drug and each drug's kind; the sizes sum to n_rows exactly."""
    n_control = int(round(cfg.control_fraction * n_rows))
    sizes, kinds = ([n_control], [_CONTROL]) if n_control > 0 else ([], [])
    if frequent:
        freq = np.rint(_FREQUENT_ROW_SHARES * n_rows).astype(int)
        freq = freq[freq > 0]
        sizes += freq.tolist()
        kinds += [_FREQUENT] * len(freq)
    left = n_rows - sum(sizes)
    if left < 0:
        raise MoAError(f"synthetic data: n_samples={n_rows} is too small for its controls and frequent drugs")
    k, take = cfg.rows_per_drug, []
    if k == 0:
        k = 6  # what the real counts leave over: 6-row drugs where they fit
        draws = rng.choice(_REPLICATE_SIZES, size=left // 5 + 8, p=_REPLICATE_PROBS)
        take = draws[np.cumsum(draws) <= left].tolist()
    rest = left - sum(take)
    regular = [*take, *[k] * (rest // k), *[1] * (rest % k)]  # then single rows
    order = rng.permutation(len(regular))
    sizes += [regular[i] for i in order]
    kinds += [_REGULAR] * len(regular)
    return np.array(sizes, dtype=int), np.array(kinds, dtype=int)


def _deal(n_slots: int, weight: np.ndarray, covered: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    """Targets for n_slots label slots, in random order, drawn by weight after
    each target in covered got one slot (where there are slots enough): the real
    scored targets all have a positive, and so do the non-empty non-scored ones."""
    base = covered if n_slots >= 2 * len(covered) else np.array([], dtype=int)
    extra = rng.choice(len(weight), size=n_slots - len(base), p=weight / weight.sum())
    return rng.permutation(np.concatenate([base, extra]).astype(int))


def _assign_labels(sizes: np.ndarray, kinds: np.ndarray, mech: _Mechanisms,
                   rng: np.random.Generator, is_train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-drug label matrices (scored, non-scored) of 0 and 1."""
    n_s = len(mech.scored)
    scored = np.zeros((len(sizes), n_s), dtype=np.int64)
    nonscored = np.zeros((len(sizes), len(mech.nonscored)), dtype=np.int64)
    regular = np.flatnonzero(kinds == _REGULAR)
    w_s, w_ns = mech.weight[:n_s].copy(), mech.weight[n_s:].copy()

    # The frequent drugs: the largest carries two labels (as nfkb + proteasome do).
    frequent = np.flatnonzero(kinds == _FREQUENT)
    if len(frequent) and n_s >= 2:
        anchors = [mech.scored.index(a) for a in _ANCHORS[:2] if a in mech.scored]
        first = anchors if len(anchors) == 2 else list(np.argsort(-w_s)[:2])
        scored[frequent[0], first] = True
        others = np.setdiff1d(np.arange(n_s), first)
        picks = rng.choice(others, size=min(len(frequent) - 1, len(others)), replace=False,
                           p=w_s[others] / w_s[others].sum())
        scored[frequent[1:1 + len(picks)], picks] = True

    u = rng.random(len(regular))
    has_scored = regular[u < _P_SCORED]
    ns_only = regular[(u >= _P_SCORED) & (u < _P_SCORED + _P_NONSCORED_ONLY)]
    none = np.array([], dtype=int)
    if len(has_scored):
        k = rng.choice(_N_SCORED_LABELS[0], size=len(has_scored), p=_N_SCORED_LABELS[1])
        owner = np.repeat(has_scored, k)
        if is_train and n_s > 4:
            # The two rarest targets get their one covering slot and no other,
            # placed on single-row drugs: targets with exactly one positive row.
            rare = np.argsort(w_s)[:2]
            w_s[rare] = 0.0
            targets = _deal(len(owner), w_s, np.arange(n_s), rng)
            targets = _put_on_single_rows(owner, targets, rare, sizes, rng)
        else:
            targets = _deal(len(owner), w_s, none, rng)
        scored[owner, targets] = True
    if w_ns.sum() > 0:
        k = rng.choice(_N_NONSCORED_LABELS[0], size=len(ns_only), p=_N_NONSCORED_LABELS[1])
        owner = np.repeat(ns_only, k)
        covered = np.flatnonzero(w_ns > 0) if is_train else none
        nonscored[owner, _deal(len(owner), w_ns, covered, rng)] = True
        # A few scored drugs also carry non-scored labels, drawn evenly over the
        # non-empty non-scored targets: on the real labels such pairs are spread
        # thin (most meet on one drug), not tied to particular scored targets.
        extra = has_scored[rng.random(len(has_scored)) < _P_EXTRA_NONSCORED]
        k = rng.choice(_N_EXTRA_NONSCORED[0], size=len(extra), p=_N_EXTRA_NONSCORED[1])
        nonempty = np.flatnonzero(w_ns > 0)
        nonscored[np.repeat(extra, k), rng.choice(nonempty, size=int(k.sum()))] = True
    return scored, nonscored


def _put_on_single_rows(owner: np.ndarray, targets: np.ndarray, rare: np.ndarray,
                        sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move each rare target's slot onto a single-row drug, so it has 1 positive row."""
    targets = targets.copy()
    singles = np.flatnonzero((sizes[owner] == 1) & ~np.isin(targets, rare))
    for t, j in zip(rare, rng.permutation(singles)):
        i = np.flatnonzero(targets == t)
        if len(i):
            targets[i[0]], targets[j] = targets[j], targets[i[0]]
    return targets


# ---------------------------------------------------------------- rows
@dataclass
class _Part:
    """One split (train or test): drugs, their labels and their rows."""

    drug_of_row: np.ndarray
    dose: np.ndarray  # 0 = D1, 1 = D2
    time: np.ndarray  # 0, 1, 2 = 24, 48, 72 h
    kinds: np.ndarray  # per drug
    scored: np.ndarray  # per drug
    nonscored: np.ndarray  # per drug


def _make_part(n_rows: int, frequent: bool, is_train: bool, cfg: SyntheticConfig,
               mech: _Mechanisms, rng: np.random.Generator) -> _Part:
    sizes, kinds = _drug_sizes(n_rows, frequent, cfg, rng)
    scored, nonscored = _assign_labels(sizes, kinds, mech, rng, is_train)
    drug_of_row = np.repeat(np.arange(len(sizes)), sizes)
    # Ordinary drugs cycle through the six dose x time cells from a random start,
    # so 6/12/18-row drugs cover each cell equally and a 5- or 7-row drug misses
    # or repeats one; controls and frequent drugs draw cells so that the totals
    # follow the real cp_dose and cp_time counts.
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    within = np.arange(n_rows) - starts[drug_of_row]
    first_cell = rng.integers(0, 6, size=len(sizes))
    regular = kinds[drug_of_row] == _REGULAR
    combo = (within + first_cell[drug_of_row]) % 6
    fixed = np.bincount(combo[regular], minlength=6).astype(float)
    need = np.maximum(np.outer(_DOSE_SHARES, _TIME_SHARES).ravel() * n_rows - fixed, 0.0)
    probs = need / need.sum() if need.sum() > 0 else np.full(6, 1 / 6)
    combo[~regular] = rng.choice(6, size=int((~regular).sum()), p=probs)
    order = rng.permutation(n_rows)  # the real files are not grouped by drug
    drug_of_row, combo = drug_of_row[order], combo[order]
    return _Part(drug_of_row, combo // 3, combo % 3, kinds, scored, nonscored)


def _saturating(labels, part, mech, cfg, rng, strength):
    """Per drug, one chemical class of each target; thresholded, saturating per gene."""
    subtype = np.floor(rng.random(labels.shape) * mech.n_subtypes).astype(int)
    per_drug = np.zeros((labels.shape[0], cfg.n_genes))
    for j in range(mech.signature.shape[1]):
        per_drug += (labels * (subtype == j)) @ mech.signature[:, j, :]
    above = np.maximum(strength - _THRESHOLD, 0.0) / (1 - _THRESHOLD)
    sat = 1.5  # per-gene response cannot grow without bound
    return sat * np.tanh(above[:, None] * per_drug[part.drug_of_row] / sat), 0.0


def _additive(labels, part, mech, cfg, rng, strength):
    """One fixed signature per target, summed and scaled: linear in the labels."""
    per_drug = labels @ mech.core
    return strength[:, None] * per_drug[part.drug_of_row], 0.0


def _interaction(labels, part, mech, cfg, rng, strength):
    """Dose x time x cell-line interactions (docs/synthetic.md); every target, not
    only the toxic ones, lowers viability in its own few cell lines at D2."""
    d = part.drug_of_row
    late = (part.time - 1.0)[:, None]  # -1, 0, +1
    high = (2.0 * part.dose - 1.0)[:, None]  # -1, +1
    genes = (0.6 * (labels @ mech.core)[d]
             + 0.8 * late * (labels @ mech.time_signature)[d]
             + 0.8 * high * (labels @ mech.dose_signature)[d])
    cells = -1.5 * (labels @ mech.cell_pattern)[d] * (part.dose == 1)[:, None] * _TIME_STRENGTH[part.time][:, None]
    return strength[:, None] * genes, cells * np.minimum(strength, 2.0)[:, None]


_SIGNALS = {"saturating": _saturating, "additive": _additive, "interaction": _interaction}


def _features(part: _Part, mech: _Mechanisms, cfg: SyntheticConfig,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """g-* and c-* of every row (unrounded, clipped to [-10, 10] as the real file is)."""
    n_drugs = len(part.kinds)
    treated = part.kinds != _CONTROL
    labels = np.concatenate([part.scored, part.nonscored], axis=1).astype(float)

    potency = rng.lognormal(0.0, 0.5, size=n_drugs)
    potency[rng.random(n_drugs) < cfg.inactive_fraction] *= 0.1
    potency *= treated
    # Each drug's own off-target response, shared by its replicates: through the
    # shared programs and, weaker, through every gene (active compounds move
    # many genes a little, which is most of the real columns' spread).
    offset = (_unit_rms(rng.standard_normal((n_drugs, len(mech.programs))) @ mech.programs)
              + _BROAD * rng.standard_normal((n_drugs, cfg.n_genes))) * treated[:, None]
    # Toxicity per drug and cell line: toxic mechanisms plus rare off-target toxicity.
    tox = labels @ (0.8 * mech.toxicity[:, None] * mech.cell_sensitivity)
    off_target = rng.exponential(0.3, size=n_drugs) * (rng.random(n_drugs) < 0.1)
    tox += off_target[:, None] * mech.cell_sensitivity.mean(axis=0)

    # Per row: strength grows with dose and time, time more so at the high dose.
    d, dose, time = part.drug_of_row, part.dose, part.time
    strength = potency[d] * _DOSE_STRENGTH[dose] * _TIME_STRENGTH[time] ** np.where(dose == 1, 1.5, 1.0)
    strength = strength * rng.lognormal(0.0, 0.15, size=len(d))  # replicate variation
    n_rows = len(d)

    signal, cell_signal = _SIGNALS[cfg.variant](labels, part, mech, cfg, rng, strength)
    # Cell death is switch-like: little loss until the dose is enough, then most.
    loss = 1.0 - np.exp(-(tox[d] * strength[:, None]) ** 4)  # (n, C) in [0, 1)
    common = 0.3 * rng.standard_t(6, size=n_rows)  # plate-level viability factor
    cells = (common[:, None] * rng.uniform(0.8, 1.2, size=cfg.n_cells)  # same factor, all cell lines
             - 10.0 * loss + cell_signal
             + _CELL_NOISE * rng.standard_normal((n_rows, cfg.n_cells)))

    genes = mech.gene_response * (cfg.signal_strength * signal + cfg.drug_offset_scale
                                  * np.minimum(strength, 2.0)[:, None] * offset[d])
    # Only rows whose cells nearly all die move genes far, each drug its own way
    # around a shared stress response: the real g-* columns reach -10 and +10
    # about equally often (49%, 51%) while their means stay near 0.
    death = (0.8 * mech.stress + 0.6 * rng.standard_normal((n_drugs, cfg.n_genes)) * mech.gene_response) * mech.gene_response
    genes += _STRESS * loss.mean(axis=1, keepdims=True) ** 2 * death[d]
    # Student-t noise (unit variance where df > 2), with a sinh-arcsinh skew mirrored
    # at random per gene: real g-* columns lean either way, their medians' median is 0.
    noise = rng.standard_t(cfg.noise_df, size=(n_rows, cfg.n_genes))
    if cfg.noise_df > 2:
        noise *= np.sqrt((cfg.noise_df - 2) / cfg.noise_df)
    lean = np.where(rng.random(cfg.n_genes) < 0.5, -0.04, 0.04)
    genes += mech.noise_scale * np.sinh(np.arcsinh(noise) + lean)
    # The assays report values relative to each plate's population (robust
    # z-scores), so every column's median sits at 0; then the file's clip.
    genes -= np.median(genes, axis=0)
    cells -= np.median(cells, axis=0)
    return np.clip(genes, -10.0, 10.0), np.clip(cells, -10.0, 10.0)


# ---------------------------------------------------------------- frames
def _hex_ids(rng: np.random.Generator, n: int, taken: set[str]) -> np.ndarray:
    """n distinct 9-hex-digit strings not in taken (which is updated)."""
    out: list[str] = []
    while len(out) < n:
        drawn = dict.fromkeys(f"{int(v):09x}" for v in rng.integers(0, 16**9, size=n - len(out) + 8))
        new = [s for s in drawn if s not in taken][: n - len(out)]
        taken.update(new)
        out += new
    return np.array(out, dtype=str)


def _with_ids(ids: np.ndarray, data, columns: list[str] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(data, columns=columns)
    frame.insert(0, schema.ID, ids)
    return frame


def _tables(ids: np.ndarray, part: _Part, genes: np.ndarray, cells: np.ndarray, mech: _Mechanisms,
            drugs: np.ndarray) -> tuple[pd.DataFrame, ...]:
    """One split's features, scored and non-scored targets and drug ids, a row per id."""
    d = part.drug_of_row
    meta = _with_ids(ids, {
        schema.CP_TYPE: np.where(part.kinds[d] == _CONTROL, schema.CONTROL, schema.TREATED),
        schema.CP_TIME: np.asarray(schema.CP_TIMES, dtype=np.int64)[part.time],
        schema.CP_DOSE: np.asarray(schema.CP_DOSES)[part.dose],
    })
    # Round to what the CSV holds so the frames equal what is read back; +0.0 drops -0.
    values = np.round(np.concatenate([genes, cells], axis=1), 4) + 0.0
    numeric = pd.DataFrame(values, columns=schema.FeatureLayout.kaggle(genes.shape[1], cells.shape[1]).numeric)
    return (pd.concat([meta, numeric], axis=1), _with_ids(ids, part.scored[d], mech.scored),
            _with_ids(ids, part.nonscored[d], mech.nonscored), _with_ids(ids, {schema.DRUG: drugs[d]}))


def generate(cfg: SyntheticConfig) -> dict[str, pd.DataFrame]:
    """The six Kaggle files as frames, keyed by their file names in schema, and
    the benchmark-only files keyed by their paths under BENCHMARK_DIR."""
    if cfg.n_samples < 1 or cfg.n_genes < 1 or cfg.n_cells < 1 or cfg.n_scored < 1 or cfg.rows_per_drug < 0:
        raise MoAError(f"synthetic data: sizes must be positive, got {cfg}")
    if cfg.variant not in VARIANTS:
        raise MoAError(f"data.variant={cfg.variant!r}: expected one of {', '.join(VARIANTS)}")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(5)]
    rng_mech, rng_train, rng_test, rng_feat, rng_ids = streams
    mech = _build_mechanisms(cfg, rng_mech)
    n_test = int(round(cfg.test_fraction * cfg.n_samples))
    train = _make_part(cfg.n_samples, True, True, cfg, mech, rng_train)
    test = _make_part(n_test, False, False, cfg, mech, rng_test)
    g_train, c_train = _features(train, mech, cfg, rng_feat)
    g_test, c_test = _features(test, mech, cfg, rng_feat)

    taken: set[str] = set()
    train_ids = np.char.add("id_", _hex_ids(rng_ids, cfg.n_samples, taken))
    test_ids = np.char.add("id_", _hex_ids(rng_ids, n_test, taken))
    drug_taken: set[str] = set()
    drug_names = _hex_ids(rng_ids, len(train.kinds), drug_taken)
    # Test drugs are new compounds; only the vehicle (controls) is the same.
    test_drugs = _hex_ids(rng_ids, len(test.kinds), drug_taken)
    if (train.kinds == _CONTROL).any():
        test_drugs[test.kinds == _CONTROL] = drug_names[train.kinds == _CONTROL][0]

    features, scored, _, drug = _tables(test_ids, test, g_test, c_test, mech, test_drugs)
    return {
        **dict(zip(FILE_NAMES[:4], _tables(train_ids, train, g_train, c_train, mech, drug_names))),
        schema.TEST_FEATURES: features,
        schema.SAMPLE_SUBMISSION: _with_ids(test_ids, np.full((n_test, len(mech.scored)), 0.5), mech.scored),
        **dict(zip(BENCHMARK_FILES, (scored, drug))),
    }


def heldout_test_labels(data_dir: str | Path) -> pd.DataFrame:
    """The scored labels of a synthetic folder's test rows (drugs absent from
    training), for benchmarks only: the training reader never opens them."""
    path = Path(data_dir) / BENCHMARK_DIR / HELDOUT_TARGETS
    if not path.is_file():
        raise MoAError(f"{path}: no held-out test labels (only synthetic data folders of format "
                       f"{FORMAT_VERSION} or later have them)")
    return pd.read_csv(path, dtype={schema.ID: "str"})


# ---------------------------------------------------------------- files
def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Kaggle-style CSV: bare header and strings, floats as held (4 decimals).

    pyarrow writes the ~18M floats of the full train file ~10x faster than
    DataFrame.to_csv(float_format=...) (about 2 s against 20 s, measured)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with open(path, "wb") as fh:
        fh.write((",".join(frame.columns) + "\n").encode())
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def write_dataset(cfg: SyntheticConfig, out_dir: Path) -> None:
    """Generate and write the six CSVs and the benchmark files into out_dir (created if missing)."""
    for name, frame in generate(cfg).items():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        _write_csv(frame, out_dir / name)


def _manifest(cfg: SyntheticConfig) -> dict:
    # rows_per_drug came after format 2: left out while at its default, so the
    # folders written before it keep their names and are reused.
    settings = {k: v for k, v in asdict(cfg).items() if (k, v) != ("rows_per_drug", 0)}
    return {"format_version": FORMAT_VERSION, "config": settings}


def _is_complete(folder: Path, manifest: dict) -> bool:
    try:
        found = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return found == manifest and all((folder / n).is_file() for n in (*FILE_NAMES, *BENCHMARK_FILES))


def ensure_synthetic(cfg: SyntheticConfig, root: Path) -> Path:
    """The folder root/synthetic-<hash>/ with the six files and manifest.json,
    generated once and reused while cfg is unchanged.

    Generation goes to a temporary folder inside root that is renamed into place
    only when complete, so an interrupted run never leaves a folder that looks
    finished."""
    root, manifest = Path(root), _manifest(cfg)
    # A short hash of every setting and the format version.
    text = json.dumps({"format_version": FORMAT_VERSION, **manifest["config"]}, sort_keys=True)
    target = root / f"synthetic-{cfg.variant}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    if _is_complete(target, manifest):
        LOG.info("reused synthetic data in %s", target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    if target.exists():  # not ours to trust: no valid manifest
        shutil.rmtree(target)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-synthetic-", dir=root))
    try:
        write_dataset(cfg, tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first; its folder is as good as ours.
            if not _is_complete(target, manifest):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    LOG.info("generated synthetic data in %s", target)
    return target
