"""Explanations of predictions: compound pooling, the network inputs' names,
Integrated Gradients recovering a planted signature, nearest compounds beating
chance, and the end-to-end ``predict explain=true`` with its one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from omegaconf import OmegaConf

from moa_lit import schema
from moa_lit.errors import MoAError
from moa_lit.predict import predict
from moa_lit.explain import attributions, neighbours
from moa_lit.explain.networks import COLUMN, COMPONENT, META, ROW_STATISTIC, STACKED, FoldNetwork, describe_inputs
from moa_lit.bench.explain import best_true_rank, evaluate_neighbours, evaluate_pooling
from moa_lit.explain.pooling import compound_calls, pool
from moa_lit.models.mlp import MLP
from moa_lit.training.features import build_feature_pipeline
from saved_run import run_predict_cli, trained_run

N_GENES, N_CELLS, N_TARGETS, SIGNAL = 40, 8, 4, 5


# ---------------------------------------------------------------- pooling
def test_pool_mean_and_logit_mean():
    p = np.array([[0.9, 0.1], [0.5, 0.3], [0.2, 0.2]])
    groups, pooled = pool(p, np.array(["a", "a", "b"]))
    assert list(groups) == ["a", "b"]
    np.testing.assert_allclose(pooled, [[0.7, 0.2], [0.2, 0.2]])
    _, geometric = pool(p, np.array(["a", "a", "b"]), "logit_mean")
    assert geometric[0, 0] == pytest.approx(0.75)  # odds 9 and 1 -> geometric mean 3


def test_compound_calls_agreement_and_controls():
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.1], [0.7, 0.1, 0.1], [0.0, 0.0, 0.0]])
    calls = compound_calls(p, np.array(["r1", "r2", "r3", "r4"]), np.array(["x", "x", "x", "ctl"]),
                           ["a", "b", "c"], 2, np.array([False, False, False, True]))
    assert list(calls["compound_id"]) == ["x", "x"]  # the control compound ranks nothing
    first = calls.iloc[0]
    assert first["moa"] == "a" and first["probability"] == pytest.approx(0.5)
    assert (first["row_min"], first["row_max"]) == (0.2, 0.7)
    assert first["rows_ranking_first"] == pytest.approx(2 / 3)
    assert calls.iloc[1]["moa"] == "b" and calls.iloc[1]["rows_ranking_first"] == pytest.approx(1 / 3)


def test_best_true_rank_and_pooling_evaluation():
    p = np.array([[0.1, 0.5, 0.4], [0.6, 0.1, 0.3]])
    assert list(best_true_rank(p, np.array([[0, 0, 1], [1, 0, 1]]))) == [2, 1]
    # Drug d: one noisy row ranks the true MoA (column 2) second, pooling fixes it.
    oof = np.array([[0.1, 0.5, 0.4], [0.1, 0.2, 0.6], [0.1, 0.1, 0.5]])
    labels = np.array([[0, 0, 1]] * 3)
    result = evaluate_pooling(oof, labels, np.array(["d", "d", "d"]), np.zeros(3, bool))
    assert result.n_drugs == 1 and result.rows["top1"] == pytest.approx(2 / 3)
    assert result.pooled["mean"]["top1"] == 1.0


# ---------------------------------------------------------------- planted data
def _planted(rng: np.random.Generator, n: int, signature_genes: np.ndarray, drugs_of: int = 1):
    """Rows labelled with at most one of N_TARGETS targets; a target's rows carry
    +2 on its SIGNAL genes over unit noise. Rows come in drugs of ``drugs_of``."""
    n_drugs = n // drugs_of
    drug_target = rng.integers(-1, N_TARGETS, size=n_drugs)  # -1: no MoA
    target = np.repeat(drug_target, drugs_of)
    genes = rng.standard_normal((n, N_GENES))
    for t in range(N_TARGETS):
        genes[np.ix_(target == t, signature_genes[t])] += 2.0
    frame = pd.DataFrame(np.hstack([genes, rng.standard_normal((n, N_CELLS))]).astype(np.float32),
                         columns=[*schema.gene_columns(N_GENES), *schema.cell_columns(N_CELLS)])
    frame.insert(0, schema.CP_DOSE, rng.choice(["D1", "D2"], n))
    frame.insert(0, schema.CP_TIME, rng.choice([24, 48, 72], n))
    frame.insert(0, schema.CP_TYPE, schema.TREATED)
    frame.insert(0, schema.ID, [f"id_{i}" for i in range(n)])
    labels = np.zeros((n, N_TARGETS))
    labels[target >= 0, target[target >= 0]] = 1
    return frame, labels, np.repeat(np.arange(n_drugs), drugs_of).astype(str)


def _train_network(frame: pd.DataFrame, labels: np.ndarray, seed: int, **features) -> FoldNetwork:
    genes, cells = schema.gene_columns(N_GENES), schema.cell_columns(N_CELLS)
    pre = build_feature_pipeline(genes, cells, n_quantiles=50, seed=seed, **features).fit(frame)
    x = torch.from_numpy(pre.transform(frame))
    torch.manual_seed(seed)
    net = MLP(x.shape[1], N_TARGETS, hidden_size=32, n_layers=2, dropout_input=0.0, dropout_hidden=0.1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    y = torch.from_numpy(labels).float()
    net.train()
    for _ in range(300):
        idx = torch.randint(0, len(x), (128,))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return FoldNetwork(f"seed {seed}", lambda f, pre=pre: torch.from_numpy(pre.transform(f)), net, net.body,
                       describe_inputs(pre, label=f"seed {seed}"))


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(7)
    signature_genes = np.stack([rng.choice(N_GENES, SIGNAL, replace=False) for _ in range(N_TARGETS)])
    train, labels, _ = _planted(rng, 1200, signature_genes)
    networks = [_train_network(train, labels, seed, pca_genes=4) for seed in (0, 1)]
    return rng, signature_genes, networks


def test_describe_inputs_names_every_network_input():
    rng = np.random.default_rng(0)
    frame, _, _ = _planted(rng, 200, np.zeros((N_TARGETS, SIGNAL), int))
    genes, cells = schema.gene_columns(N_GENES), schema.cell_columns(N_CELLS)
    pre = build_feature_pipeline(genes, cells, n_quantiles=50, pca_genes=3, factor_analysis_cells=2,
                                 row_stats=True).fit(frame)
    n_preprocessed = pre.transform(frame.head(3)).shape[1]
    assert len(describe_inputs(pre)) == n_preprocessed
    inputs = describe_inputs(pre, n_inputs=n_preprocessed + 2, label="seed 0 fold 1")  # 2 stacked predictions
    assert len(inputs) == n_preprocessed + 2 and [i.kind for i in inputs].count(STACKED) == 2
    assert [i.name for i in inputs[:N_GENES]] == genes and all(i.kind == COLUMN for i in inputs[:N_GENES])
    pca = inputs[N_GENES : N_GENES + 3]
    assert [i.kind for i in pca] == [COMPONENT] * 3 and pca[0].name == "genes PCA 1 (seed 0 fold 1)"
    assert all(c.startswith("g-") for c, _ in pca[0].loadings)
    assert [i.name for i in inputs[N_GENES + 3 : N_GENES + 3 + N_CELLS]] == cells
    assert inputs[N_GENES + 3 + N_CELLS].name == "cells factor analysis 1 (seed 0 fold 1)"
    assert sum(i.kind == ROW_STATISTIC for i in inputs) == 8 and sum(i.kind == META for i in inputs) == 5
    assert [i.name for i in inputs[-2:]] == ["stacked prediction 1", "stacked prediction 2"]


def test_integrated_gradients_rank_the_planted_signature_first(planted):
    rng, signature_genes, networks = planted
    unseen, labels, _ = _planted(rng, 400, signature_genes)  # rows no network trained on
    numeric = [*schema.gene_columns(N_GENES), *schema.cell_columns(N_CELLS)]
    for t in range(N_TARGETS):
        rows = unseen[labels[:, t] == 1].reset_index(drop=True)
        attr = attributions.integrated_gradients(networks, rows, numeric, np.full((len(rows), 1), t), n_steps=16)
        mean = attr.values[:, 0, :].mean(axis=0)
        columns = [attr.names.index(g) for g in schema.gene_columns(N_GENES)]
        gene_scores = mean[columns]
        signal = np.zeros(N_GENES, bool)
        signal[signature_genes[t]] = True
        # Every signal gene above every other gene (AUC 1); the reported top
        # features are signature genes, or components loading on them.
        assert gene_scores[signal].min() > gene_scores[~signal].max(), (t, gene_scores[signal], gene_scores[~signal].max())
        signature = {f"g-{g}" for g in signature_genes[t]}
        top = attributions.top_features(mean, attr.names, attr.inputs, SIGNAL)
        assert len(top) == SIGNAL
        for f in top:
            if f["kind"] == COLUMN:
                assert f["name"] in signature
            else:
                assert f["kind"] == COMPONENT and signature & {item["column"] for item in f["top_loadings"][:3]}
        # Completeness: the attributions add up to the logit difference (small error at 16 steps).
        assert attr.delta.mean() < 0.05 * attr.logit_gap.mean()


def test_nearest_compounds_share_a_moa_more_often_than_chance(planted):
    rng, signature_genes, _ = planted
    frame, labels, drugs = _planted(rng, 1200, signature_genes, drugs_of=6)
    folds = (pd.factorize(pd.Series(drugs))[0] % 2)
    networks_by_fold = {
        k: [_train_network(frame[folds != k].reset_index(drop=True), labels[folds != k], seed=k)] for k in (0, 1)
    }
    result = evaluate_neighbours(networks_by_fold, frame, drugs, folds, labels)
    assert result.n_queries > 100
    assert 0.15 < result.chance < 0.35  # about 1 in 4 labelled drugs share the one MoA of a query
    assert result.hit_rate[neighbours.LEARNED] > result.chance + 0.4
    assert result.hit_rate[neighbours.FEATURES] > result.chance + 0.2


# ---------------------------------------------------------------- predict explain=true
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return trained_run(tmp_path_factory)


def _compounds_file(test_ids: pd.Series, path) -> pd.DataFrame:
    table = pd.DataFrame({"sig_id": test_ids, "compound_id": [f"cmp{i // 3}" for i in range(len(test_ids))]})
    table.sample(frac=1.0, random_state=0).to_csv(path, index=False)  # order must not matter
    return table


def test_predict_explain_writes_calls_explanations_and_page(saved, tmp_path):
    run_dir, data_dir = saved
    test = pd.read_csv(data_dir / "test_features.csv", usecols=["sig_id", "cp_type"])
    table = _compounds_file(test["sig_id"], tmp_path / "compounds.csv")
    proc = run_predict_cli([f"run_dir={run_dir}", f"input={data_dir / 'test_features.csv'}", "output=preds.csv",
                            "explain=true", "compounds=compounds.csv", "k=4", "top_k=2", "num_threads=1"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "preds_explained"
    calls = pd.read_csv(folder / "calls.csv")
    predictions = pd.read_csv(tmp_path / "preds.csv").set_index("sig_id")
    treated = table[table["sig_id"].isin(test["sig_id"][test["cp_type"] == "trt_cp"])]
    assert set(calls["compound_id"]) == set(treated["compound_id"])
    assert (calls.groupby("compound_id")["rank"].apply(list) == pd.Series([[1, 2]] * calls["compound_id"].nunique())
            .set_axis(calls.groupby("compound_id")["rank"].apply(list).index)).all()
    # The pooled probability is the mean probability over the compound's treated rows (pooling=mean, the default).
    for compound, rows in treated.groupby("compound_id"):
        first = calls[(calls["compound_id"] == compound) & (calls["rank"] == 1)].iloc[0]
        mean = predictions.loc[rows["sig_id"]].mean(axis=0)
        assert first["moa"] == mean.idxmax() and first["probability"] == pytest.approx(mean.max(), rel=1e-5)

    explanations = json.loads((folder / "explanations.json").read_text())
    assert len(explanations["compounds"]) == calls["compound_id"].nunique()
    drugs = pd.read_csv(data_dir / "train_drug.csv")
    targets = pd.read_csv(data_dir / "train_targets_scored.csv").set_index("sig_id")
    moas_of_drug = {d: set(targets.columns[targets.loc[ids].to_numpy().max(axis=0) > 0])
                    for d, ids in drugs.groupby("drug_id")["sig_id"]}
    for compound in explanations["compounds"]:
        assert [c["rank"] for c in compound["calls"]] == [1, 2]
        for call in compound["calls"]:
            assert call["top_features"] and all(f["attribution"] > 0 for f in call["top_features"])
            assert call["ig_completeness_error"] < 0.1 * max(call["logit_gap"], 1e-3) + 1e-3
        near = compound["nearest_compounds"]
        assert len(near) == 4 and [n["similarity"] for n in near] == sorted((n["similarity"] for n in near), reverse=True)
        for n in near:  # known compounds with their true MoAs
            assert n["moas"] and set(n["moas"]) == moas_of_drug[n["drug_id"]]
    names = {f["name"] for c in explanations["compounds"] for call in c["calls"] for f in call["top_features"]}
    assert names <= set(schema.gene_columns()) | set(schema.cell_columns()) | {
        f"{b} row {s}" for b in ("genes", "cells") for s in ("mean", "std", "skew", "kurtosis")} | {
        "cp_time=24", "cp_time=48", "cp_time=72", "cp_dose=D1", "cp_dose=D2"}
    html = (folder / "page.html").read_text()
    assert html.count('<section class="compound"') == len(explanations["compounds"])
    assert "http://" not in html and "https://" not in html and "src=" not in html  # self-contained


def _fails_cleanly(proc, tmp_path, *needles):
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moa-lit: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "preds.csv").exists() and not (tmp_path / "preds_explained").exists()
    return lines[0]


def _explain_cli(run_dir, data_dir, tmp_path, *extra):
    return run_predict_cli([f"run_dir={run_dir}", f"input={data_dir / 'test_features.csv'}", "output=preds.csv",
                            "explain=true", "num_threads=1", *extra], cwd=tmp_path)


def test_compound_file_missing_input_ids_is_one_line_and_writes_nothing(saved, tmp_path):
    run_dir, data_dir = saved
    test = pd.read_csv(data_dir / "test_features.csv", usecols=["sig_id"])
    _compounds_file(test["sig_id"].iloc[2:], tmp_path / "compounds.csv")
    proc = _explain_cli(run_dir, data_dir, tmp_path, "compounds=compounds.csv")
    _fails_cleanly(proc, tmp_path, "compounds=compounds.csv", "2 of", repr(test["sig_id"].iloc[0]))
    pd.DataFrame({"sig_id": test["sig_id"], "drug": "x"}).to_csv(tmp_path / "other.csv", index=False)
    proc = _explain_cli(run_dir, data_dir, tmp_path, "compounds=other.csv")
    _fails_cleanly(proc, tmp_path, "no column 'compound_id'", "compound_column")


@pytest.mark.parametrize("setting, needle", [("k=0", "k=0"), ("k=100000", "k=100000: expected a whole number from 1 to"),
                                             ("top_k=9999", "top_k=9999"), ("ig_steps=0", "ig_steps=0"),
                                             ("pooling=max", "pooling='max'")])
def test_out_of_range_counts_are_refused_before_anything_is_written(saved, tmp_path, setting, needle):
    # In-process (the CLI's one-line form is checked above): predict raises MoAError.
    run_dir, data_dir = saved
    key, value = setting.split("=")
    cfg = OmegaConf.create({"run_dir": str(run_dir), "input": str(data_dir / "test_features.csv"),
                            "output": str(tmp_path / "preds.csv"), "top_k": 0, "num_threads": 1,
                            "explain": True, key: int(value) if value.isdigit() else value})
    with pytest.raises(MoAError) as err:
        predict(cfg)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "preds.csv").exists() and not (tmp_path / "preds_explained").exists()


def test_run_without_models_is_one_line_and_writes_nothing(saved, tmp_path):
    run_dir = shutil.copytree(saved[0], tmp_path / "run-copy")
    (run_dir / "models" / "seed1" / "fold0" / "best.ckpt").unlink()
    _fails_cleanly(_explain_cli(run_dir, saved[1], tmp_path), tmp_path, "seed1/fold0/best.ckpt: missing")


def test_blended_run_is_one_line_and_writes_nothing(saved, tmp_path):
    # A blend's members each have their own preprocessing and weight: explain one of them.
    from dataclasses import replace

    from moa_lit.runs.manifest import BlendMember
    from moa_lit.runs.run_dir import RunDir

    run_dir, data_dir = saved
    blend = RunDir(tmp_path / "blend")
    blend.path.mkdir()
    blend.write_manifest(replace(RunDir(run_dir).manifest(), members=[BlendMember(str(run_dir), 1.0)]))
    cfg = OmegaConf.create({"run_dir": str(blend.path), "input": str(data_dir / "test_features.csv"),
                            "output": str(tmp_path / "preds.csv"), "num_threads": 1, "explain": True})
    with pytest.raises(MoAError) as err:
        predict(cfg)
    assert f"run_dir={blend.path} is a blend of other runs ({run_dir})" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "preds.csv").exists() and not (tmp_path / "preds_explained").exists()


def test_explain_dir_with_foreign_files_is_refused(saved, tmp_path):
    run_dir, data_dir = saved
    (tmp_path / "preds_explained").mkdir()
    (tmp_path / "preds_explained" / "notes.txt").write_text("mine")
    proc = _explain_cli(run_dir, data_dir, tmp_path)
    assert proc.returncode == 2 and "already holds 'notes.txt'" in proc.stderr
    assert not (tmp_path / "preds.csv").exists() and (tmp_path / "preds_explained" / "notes.txt").read_text() == "mine"


def test_explain_batch_names_components_finds_same_moa_neighbours_and_skips_controls(planted):
    from moa_lit.explain.batch import ReferenceData, explain_batch

    rng, signature_genes, networks = planted
    numeric = [*schema.gene_columns(N_GENES), *schema.cell_columns(N_CELLS)]
    names = [f"moa{t}" for t in range(N_TARGETS)]
    train, labels, drugs = _planted(rng, 600, signature_genes, drugs_of=6)
    reference = ReferenceData(train, np.char.add("ref", drugs), labels, "planted")
    queries, query_labels, query_drugs = _planted(rng, 120, signature_genes, drugs_of=6)
    with torch.no_grad():
        p = np.mean([torch.sigmoid(n.network(n.transform(queries))).numpy() for n in networks], axis=0)
    out = explain_batch(networks, queries, p, names, numeric, query_drugs, reference, top_k=2, k=3, ig_steps=8)
    compounds = out.explanations["compounds"]
    assert [c["compound_id"] for c in compounds] == list(pd.unique(query_drugs))
    hits = []
    for c in compounds:
        truth = {names[t] for t in np.flatnonzero(query_labels[query_drugs == c["compound_id"]][0])}
        assert len(c["nearest_compounds"]) == 3 and all(n["drug_id"].startswith("ref") for n in c["nearest_compounds"])
        if truth:
            hits.append(bool(truth & set(c["nearest_compounds"][0]["moas"])))
            assert c["calls"][0]["moa"] in truth  # a planted signature is easy to call
    assert np.mean(hits) > 0.8
    # PCA components among the top inputs are reported with their top-loading genes.
    components = {f["name"] for c in compounds for call in c["calls"] for f in call["top_features"] if f["kind"] == COMPONENT}
    assert components and components <= set(out.explanations["derived_inputs"])
    assert all(out.explanations["derived_inputs"][n]["top_loadings"][0]["column"].startswith("g-") for n in components)
    assert set(out.calls["compound_id"]) == set(query_drugs) and "genes PCA" in out.html

    controls = queries.assign(cp_type=schema.CONTROL)
    out = explain_batch(networks, controls, np.zeros_like(p), names, numeric, query_drugs, reference, top_k=2, k=3)
    assert out.explanations["compounds"] == [] and out.calls.empty
    assert out.explanations["control_only_compounds"] == sorted(set(query_drugs))


def test_reference_vectors_are_cached_and_reused(planted, tmp_path, monkeypatch):
    from moa_lit.explain import batch

    rng, signature_genes, networks = planted
    train, labels, drugs = _planted(rng, 120, signature_genes, drugs_of=6)
    reference = batch.ReferenceData(train, drugs, labels, "planted")
    cache = tmp_path / ".moa_cache" / "explain-reference-x.npz"
    built = batch.cached_reference(networks, reference, ["a", "b", "c", "d"], cache)
    assert cache.is_file()

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached reference should have been used")

    monkeypatch.setattr(neighbours, "build_reference", no_rebuild)
    again = batch.cached_reference(networks, reference, ["a", "b", "c", "d"], cache)
    assert list(again.drugs) == list(built.drugs) and again.moas == built.moas
    for space in (neighbours.LEARNED, neighbours.FEATURES):
        assert torch.equal(again.vectors[space], built.vectors[space])


def test_explain_benchmark_runs_on_a_saved_run(saved, capsys):
    """The benchmark behind the README's explanation numbers runs end to end on
    a saved run (a merge once broke its OOF read without any test noticing)."""
    from moa_lit.bench import explain as explain_bench

    run_dir, _ = saved
    explain_bench.main([
        "--run-dir", str(run_dir), "--threads", "1", "--queries", "30", "--fidelity-rows", "3",
        "--steps", "2,4", "--reference-steps", "8", "--ig-steps", "4",
    ])
    out = capsys.readouterr().out
    for line in ("pooling (OOF rows of", "single rows:", "pooled mean", "Integrated Gradients:"):
        assert line in out, out


def test_explain_says_each_phase_and_its_count_on_stderr(planted, tmp_path, capsys, monkeypatch):
    """explain=true took minutes in silence on a few thousand rows: every phase
    now prints a line on stderr, and counted phases their done/total."""
    from moa_lit.explain import batch
    from moa_lit.progress import Progress

    rng, signature_genes, networks = planted
    numeric = [*schema.gene_columns(N_GENES), *schema.cell_columns(N_CELLS)]
    train, labels, drugs = _planted(rng, 120, signature_genes, drugs_of=6)
    queries, _, query_drugs = _planted(rng, 30, signature_genes, drugs_of=3)
    monkeypatch.setattr(batch, "Progress", lambda what: Progress(what, every_s=0))  # every count printed
    out = batch.explain_batch(networks, queries, np.full((30, N_TARGETS), 0.5), [f"moa{t}" for t in range(N_TARGETS)],
                              numeric, query_drugs, batch.ReferenceData(train, drugs, labels, "planted"), top_k=2,
                              k=2, ig_steps=4)
    out.write(tmp_path / "explained")
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert all(line.startswith("explain: ") and line.endswith(" s)") for line in lines), lines
    phases = ["preprocessing 30 treated rows, model", "Integrated Gradients, 30 rows x 2 MoAs x 2 models at 4 steps",
              "reference vectors of", "nearest of 10 compounds", "top inputs of each call, compound",
              "rendering the page of 10 compounds", f"writing {tmp_path / 'explained'}", "done"]
    firsts = [next(i for i, line in enumerate(lines) if line.startswith(f"explain: {p}")) for p in phases]
    assert firsts == sorted(firsts), lines
    for phase, total in (("preprocessing", 2), ("Integrated Gradients", 2), ("reference vectors", 2),
                         ("top inputs", 10)):
        counted = [line for line in lines if line.startswith(f"explain: {phase}")]
        assert f" 0/{total} (" in counted[0] and f" {total}/{total} (" in counted[-1], counted
