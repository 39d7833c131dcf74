"""A synthetic stand-in for the lish-moa data, written in the exact Kaggle layout.

It is the project's built-in default dataset: the same reader, folds, features and
models run on it as on the real files. Its label and replicate statistics follow
the facts measured on the real labels (summarised in docs/data.md); no real
file or table derived from one is used here.

The generative model
--------------------
Mechanisms. Every target (206 scored + 402 non-scored) is a mechanism with
  * a popularity weight (log-normal, so prevalence is heavily skewed; about 18% of
    the non-scored ones get weight 0 and so no positive at all, as on the real data);
  * a gene signature built from a shared set of sparse gene "programs" (pathways)
    plus genes of its own. Some non-scored mechanisms are variants of a scored
    "parent" and share part of its signature; others only share programs, as real
    pathways do. Nothing forces pretraining on them to help;
  * one to three sub-types (e.g. different chemical classes hitting one target)
    whose signatures share only part of a common core, so one label is a union of
    distinct responses;
  * a toxicity: mechanisms named after proteasome, tubulin, HSP, topoisomerase, ...
    lower cell viability, each with its own pattern of cell-line sensitivities.

Drugs. Labels live on drugs, and all rows of a drug share them. Most drugs have 6
rows (2 doses x 3 times), some 5, 7, 12 or 13, about 4% a single row; nine frequent
drugs hold ~17% of training rows; controls (~7.8%, `ctl_vehicle`) share one drug id
and have no label and no signal. A drug gets a potency (log-normal; a quarter of
drugs are nearly inactive, as many annotated compounds are at the assayed doses)
and an off-target response of its own shared by its replicates, so a row-wise
split lets a model recognise drugs it has seen and reads optimistic.

Rows. The strength of a row's response is potency x dose x time, with D2 stronger,
effects growing with time, and time mattering more at the high dose.
  * g-* = saturating response c*tanh(strength * signature / c) summed over the
    drug's mechanisms and its off-target part, a stress signature that follows
    viability loss, and skewed Student-t noise (heavy tails).
  * c-* = a common viability factor shared by all cell lines (plate effects, mild
    non-specific toxicity) minus a saturating loss 1 - exp(-toxicity) per cell
    line for toxic mechanisms, plus noise, floored at -10.

Why these non-linearities: with signatures summed linearly under Gaussian noise,
logistic regression would be the best model, which the real data is not known to
be. Saturation, potency thresholds, sub-types with partly different signatures,
dose/time interactions and heavy tails make the Bayes-optimal decision surface
non-linear, as one expects of biology, while keeping it learnable.

Everything is drawn from `numpy.random.default_rng` streams spawned from the
seed, so one config gives byte-identical files.
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
from moa_lit.errors import MoAError

LOG = logging.getLogger("moa_lit.data.synthetic")

# Bump when the generator changes so cached folders are not reused across versions.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILE_NAMES = (
    schema.TRAIN_FEATURES,
    schema.TRAIN_TARGETS_SCORED,
    schema.TRAIN_TARGETS_NONSCORED,
    schema.TRAIN_DRUG,
    schema.TEST_FEATURES,
    schema.SAMPLE_SUBMISSION,
)


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
    # Scale of the mechanism responses in g-* relative to unit noise. Calibrated at
    # full size (seed 0, treated rows, 2 drug-grouped folds, rank-Gauss inputs):
    # per-target prior 0.0272, 2x512 MLP 0.0220 (-19%), BN + linear 0.0246 (-10%).
    signal_strength: float = 0.55
    # Share of drugs whose potency is ~10x lower: labelled but nearly silent.
    inactive_fraction: float = 0.25
    # Scale of each drug's own off-target response, relative to a mechanism.
    drug_offset_scale: float = 0.6
    # Degrees of freedom of the Student-t noise on g-* (lower: heavier tails).
    noise_df: float = 4.0


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
_P_EXTRA_NONSCORED = 0.06  # scored drugs that also carry a non-scored label
_N_SCORED_LABELS = (np.array([1, 2, 3, 4, 5]), np.array([0.902, 0.067, 0.02, 0.007, 0.004]))
_N_NONSCORED_LABELS = (np.array([1, 2, 3]), np.array([0.9, 0.08, 0.02]))
_EMPTY_NONSCORED_SHARE = 71 / 402
_DOSE_STRENGTH = np.array([0.6, 1.0])  # D1, D2
_TIME_STRENGTH = np.array([0.55, 0.8, 1.0])  # 24, 48, 72 h

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
    signature: np.ndarray  # (M, 3, G) gene response per sub-type
    n_subtypes: np.ndarray  # (M,) 1..3
    toxicity: np.ndarray  # (M,) 0 for non-toxic mechanisms
    cell_sensitivity: np.ndarray  # (M, C) multiplies toxicity per cell line
    stress: np.ndarray  # (G,) generic stress response of dying cells
    programs: np.ndarray  # (K, G) shared gene programs


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
    if n_s > 0:
        for j in np.flatnonzero(rng.random(n_m - n_s) < 0.4) + n_s:
            core[j] = _unit_rms(0.6 * core[rng.integers(n_s)] + 0.8 * core[j])

    # Sub-types share only part of the core; each adds a response of its own.
    n_subtypes = rng.choice([1, 2, 3], size=n_m, p=[0.4, 0.4, 0.2])
    own = _unit_rms(_sparse_vectors(rng, n_m * 3, g, gene_block)).reshape(n_m, 3, g)
    shared = np.where(n_subtypes[:, None] == 1, 1.0, 0.6)  # single sub-type: pure core
    signature = _unit_rms(shared[:, :, None] * core[:, None, :]
                          + np.sqrt(1 - shared**2)[:, :, None] * own)

    toxic = np.array([is_toxic_mechanism(n) for n in [*scored, *nonscored]], dtype=bool)
    toxicity = np.where(toxic, rng.uniform(0.6, 2.0, size=n_m), 0.0)
    base_sensitivity = rng.uniform(0.5, 1.5, size=c)  # some cell lines are frail
    cell_sensitivity = base_sensitivity * rng.lognormal(0.0, 0.4, size=(n_m, c))
    stress = _unit_rms(_sparse_vectors(rng, 1, g, 3 * gene_block))[0]
    return _Mechanisms(scored, nonscored, weight, signature, n_subtypes, toxicity,
                       cell_sensitivity, stress, programs)


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
    draws = rng.choice(_REPLICATE_SIZES, size=left // 5 + 8, p=_REPLICATE_PROBS)
    take = draws[np.cumsum(draws) <= left]
    rest = left - int(take.sum())
    # Fill what is left with one 6-row drug where it fits, then single rows.
    fill = [6] * (rest // 6) + [1] * (rest % 6)
    regular = [*take.tolist(), *fill]
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
    """Per-drug label matrices (scored, non-scored) as bool arrays."""
    n_drugs, n_s = len(sizes), len(mech.scored)
    n_ns = len(mech.nonscored)
    scored = np.zeros((n_drugs, n_s), dtype=bool)
    nonscored = np.zeros((n_drugs, n_ns), dtype=bool)
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
    if n_s and len(has_scored):
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
    if n_ns and w_ns.sum() > 0:
        extra = has_scored[rng.random(len(has_scored)) < _P_EXTRA_NONSCORED]
        k = rng.choice(_N_NONSCORED_LABELS[0], size=len(ns_only), p=_N_NONSCORED_LABELS[1])
        owner = np.concatenate([np.repeat(ns_only, k), extra])
        covered = np.flatnonzero(w_ns > 0) if is_train else none
        nonscored[owner, _deal(len(owner), w_ns, covered, rng)] = True
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
    # or repeats one; controls and frequent drugs draw cells at random.
    combo = rng.integers(0, 6, size=n_rows)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    within = np.arange(n_rows) - starts[drug_of_row]
    first_cell = rng.integers(0, 6, size=len(sizes))
    regular = kinds[drug_of_row] == _REGULAR
    combo[regular] = (within + first_cell[drug_of_row])[regular] % 6
    order = rng.permutation(n_rows)  # the real files are not grouped by drug
    drug_of_row, combo = drug_of_row[order], combo[order]
    return _Part(drug_of_row, combo // 3, combo % 3, kinds, scored, nonscored)


def _features(part: _Part, mech: _Mechanisms, cfg: SyntheticConfig,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """g-* and c-* of every row (unrounded)."""
    n_drugs = len(part.kinds)
    treated = part.kinds != _CONTROL
    labels = np.concatenate([part.scored, part.nonscored], axis=1).astype(float)

    # Per drug: which sub-type of each mechanism it is, its summed response.
    subtype = np.floor(rng.random(labels.shape) * mech.n_subtypes).astype(int)
    response = np.zeros((n_drugs, cfg.n_genes))
    for j in range(3):
        response += (labels * (subtype == j)) @ mech.signature[:, j, :]
    n_prog = len(mech.programs)
    offset = _unit_rms(rng.standard_normal((n_drugs, n_prog)) @ mech.programs)
    response += cfg.drug_offset_scale * offset * treated[:, None]
    potency = rng.lognormal(0.0, 0.5, size=n_drugs)
    potency[rng.random(n_drugs) < cfg.inactive_fraction] *= 0.1
    potency *= treated
    # Toxicity per drug and cell line: toxic mechanisms plus rare off-target toxicity.
    tox = labels @ (mech.toxicity[:, None] * mech.cell_sensitivity)
    off_target = rng.exponential(0.3, size=n_drugs) * (rng.random(n_drugs) < 0.1)
    tox += off_target[:, None] * mech.cell_sensitivity.mean(axis=0)

    # Per row: strength grows with dose and time, time more so at the high dose.
    d, dose, time = part.drug_of_row, part.dose, part.time
    strength = potency[d] * _DOSE_STRENGTH[dose] * _TIME_STRENGTH[time] ** np.where(dose == 1, 1.5, 1.0)
    strength = strength * rng.lognormal(0.0, 0.15, size=len(d))  # replicate variation

    loss = 1.0 - np.exp(-tox[d] * strength[:, None] ** 1.5)  # (n, C) in [0, 1)
    n_rows = len(d)
    common = 0.7 * rng.standard_t(5, size=n_rows)  # plate-level viability factor
    cells = (common[:, None] * rng.uniform(0.8, 1.2, size=cfg.n_cells)  # same factor, all cell lines
             - 9.0 * loss
             + 0.45 * rng.standard_normal((n_rows, cfg.n_cells)))
    cells = np.maximum(cells, -10.0)

    sat = 2.0  # per-gene response cannot grow without bound
    genes = cfg.signal_strength * sat * np.tanh(strength[:, None] * response[d] / sat)
    genes += 1.5 * loss.mean(axis=1, keepdims=True) * mech.stress
    genes += _skewed_t_noise(rng, (n_rows, cfg.n_genes), cfg.noise_df)
    return genes, cells


def _skewed_t_noise(rng: np.random.Generator, shape: tuple[int, int], df: float) -> np.ndarray:
    """Student-t noise (unit variance where df > 2), skewed to the left by a
    sinh-arcsinh shift as the real g-* columns are."""
    noise = rng.standard_t(df, size=shape)
    if df > 2:
        noise *= np.sqrt((df - 2) / df)
    return np.sinh(np.arcsinh(noise) - 0.1)


# ---------------------------------------------------------------- frames
def _hex_ids(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    """n distinct 9-hex-digit strings not in taken (which is updated)."""
    out: list[str] = []
    while len(out) < n:
        for v in rng.integers(0, 16**9, size=n - len(out) + 8):
            s = f"{int(v):09x}"
            if s not in taken:
                taken.add(s)
                out.append(s)
                if len(out) == n:
                    break
    return out


def _feature_frame(ids: list[str], part: _Part, genes: np.ndarray, cells: np.ndarray) -> pd.DataFrame:
    layout = schema.FeatureLayout.kaggle(genes.shape[1], cells.shape[1])
    meta = pd.DataFrame({
        schema.ID: pd.array(ids, dtype="str"),
        schema.CP_TYPE: pd.array(np.where(part.kinds[part.drug_of_row] == _CONTROL,
                                          schema.CONTROL, schema.TREATED).tolist(), dtype="str"),
        schema.CP_TIME: np.asarray(schema.CP_TIMES, dtype=np.int64)[part.time],
        schema.CP_DOSE: pd.array(np.asarray(schema.CP_DOSES)[part.dose].tolist(), dtype="str"),
    })
    # Round to what the CSV holds so the frames equal what is read back; +0.0 drops -0.
    values = np.round(np.concatenate([genes, cells], axis=1), 4) + 0.0
    numeric = pd.DataFrame(values, columns=layout.numeric)
    return pd.concat([meta, numeric], axis=1)


def _target_frame(ids: list[str], names: list[str], per_drug: np.ndarray, drug_of_row: np.ndarray) -> pd.DataFrame:
    values = per_drug[drug_of_row].astype(np.int64)
    frame = pd.DataFrame(values, columns=names)
    frame.insert(0, schema.ID, pd.array(ids, dtype="str"))
    return frame


def generate(cfg: SyntheticConfig) -> dict[str, pd.DataFrame]:
    """The six Kaggle files as frames, keyed by their file names in schema."""
    if cfg.n_samples < 1 or cfg.n_genes < 1 or cfg.n_cells < 1 or cfg.n_scored < 1:
        raise MoAError(f"synthetic data: sizes must be positive, got {cfg}")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(5)]
    rng_mech, rng_train, rng_test, rng_feat, rng_ids = streams
    mech = _build_mechanisms(cfg, rng_mech)
    n_test = int(round(cfg.test_fraction * cfg.n_samples))
    train = _make_part(cfg.n_samples, True, True, cfg, mech, rng_train)
    test = _make_part(n_test, False, False, cfg, mech, rng_test)
    g_train, c_train = _features(train, mech, cfg, rng_feat)
    g_test, c_test = _features(test, mech, cfg, rng_feat)

    taken: set[str] = set()
    train_ids = ["id_" + s for s in _hex_ids(rng_ids, cfg.n_samples, taken)]
    test_ids = ["id_" + s for s in _hex_ids(rng_ids, n_test, taken)]
    drug_names = np.array(_hex_ids(rng_ids, len(train.kinds), set()), dtype=object)

    submission = pd.DataFrame(np.full((n_test, len(mech.scored)), 0.5), columns=mech.scored)
    submission.insert(0, schema.ID, pd.array(test_ids, dtype="str"))
    return {
        schema.TRAIN_FEATURES: _feature_frame(train_ids, train, g_train, c_train),
        schema.TRAIN_TARGETS_SCORED: _target_frame(train_ids, mech.scored, train.scored, train.drug_of_row),
        schema.TRAIN_TARGETS_NONSCORED: _target_frame(train_ids, mech.nonscored, train.nonscored, train.drug_of_row),
        schema.TRAIN_DRUG: pd.DataFrame({
            schema.ID: pd.array(train_ids, dtype="str"),
            schema.DRUG: pd.array(drug_names[train.drug_of_row].tolist(), dtype="str"),
        }),
        schema.TEST_FEATURES: _feature_frame(test_ids, test, g_test, c_test),
        schema.SAMPLE_SUBMISSION: submission,
    }


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
    """Generate and write the six CSVs into out_dir (created if missing)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in generate(cfg).items():
        _write_csv(frame, out_dir / name)


def config_hash(cfg: SyntheticConfig) -> str:
    """Short hash of every config field and the format version."""
    text = json.dumps({"format_version": FORMAT_VERSION, **asdict(cfg)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _manifest(cfg: SyntheticConfig) -> dict:
    return {"format_version": FORMAT_VERSION, "config": asdict(cfg)}


def _is_complete(folder: Path, cfg: SyntheticConfig) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest == _manifest(cfg) and all((folder / n).is_file() for n in FILE_NAMES)


def ensure_synthetic(cfg: SyntheticConfig, root: Path) -> Path:
    """The folder root/synthetic-<hash>/ with the six files and manifest.json,
    generated once and reused while cfg is unchanged.

    Generation goes to a temporary folder inside root that is renamed into place
    only when complete, so an interrupted run never leaves a folder that looks
    finished."""
    root = Path(root)
    target = root / f"synthetic-{config_hash(cfg)}"
    if _is_complete(target, cfg):
        LOG.info("reused synthetic data in %s", target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    if target.exists():  # not ours to trust: no valid manifest
        shutil.rmtree(target)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-synthetic-", dir=root))
    try:
        write_dataset(cfg, tmp)
        (tmp / MANIFEST).write_text(json.dumps(_manifest(cfg), indent=2, sort_keys=True) + "\n")
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first; its folder is as good as ours.
            if not _is_complete(target, cfg):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    LOG.info("generated synthetic data in %s", target)
    return target
