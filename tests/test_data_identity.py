"""The data's identity: sig_ids are text from the input files to every file a
run writes and reads back (numeric and zero-padded ids survive), and the
submission's rows are the sample submission's."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import compose_train
from moa_lit import schema
from moa_lit.runs import files as run_files
from moa_lit.data.synthetic import SyntheticConfig, ensure_synthetic
from moa_lit.runs.tables import read_run_csv
from moa_lit.train import train

N_GENES, N_CELLS = 20, 8


def numeric_id_folder(root: Path) -> tuple[Path, dict[str, str]]:
    """Small synthetic data whose sig_ids are numbers, half of them zero-padded
    (1200000, 0000601, ...): a copy in the Kaggle layout with ids replaced."""
    source = ensure_synthetic(
        SyntheticConfig(n_samples=400, seed=3, n_genes=N_GENES, n_cells=N_CELLS, n_scored=12, n_nonscored=6), root / "gen"
    )
    train_ids = pd.read_csv(source / schema.TRAIN_FEATURES, usecols=[schema.ID], dtype=str)[schema.ID]
    test_ids = pd.read_csv(source / schema.TEST_FEATURES, usecols=[schema.ID], dtype=str)[schema.ID]
    mapping = {old: (f"{1200000 + i}" if i % 2 else f"{600 + i:07d}") for i, old in enumerate([*train_ids, *test_ids])}
    target = root / "numeric-ids"
    target.mkdir()
    for path in source.glob("*.csv"):
        frame = pd.read_csv(path, dtype={schema.ID: str, schema.DRUG: str}, keep_default_na=False)
        frame[schema.ID] = frame[schema.ID].map(mapping)
        if path.name == schema.SAMPLE_SUBMISSION:
            frame = frame.iloc[::-1]  # the submission must follow the sample's row order
        frame.to_csv(target / path.name, index=False)
    return target, mapping


@pytest.mark.slow
def test_numeric_and_zero_padded_sig_ids_survive_train_resume_merge_and_predict(tmp_path):
    data_dir, _ = numeric_id_folder(tmp_path)
    run_dir = tmp_path / "run"
    overrides = [
        "data=kaggle", f"data.dir={data_dir}", f"data.n_genes={N_GENES}", f"data.n_cells={N_CELLS}",
        "cv.n_folds=2", "trainer.max_epochs=2", "model.net.hidden_size=32", "loader.batch_size=64",
        "callbacks.progress_bar.refresh_rate=0", "num_threads=1",
        "allow_worse_than_prior=true",  # 2 epochs on 400 rows: about the prior; ids are the point here
    ]
    cfg = compose_train([*overrides, f"paths.output_dir={run_dir}"])
    train(cfg)

    train_ids = pd.read_csv(data_dir / schema.TRAIN_FEATURES, usecols=[schema.ID], dtype=str)[schema.ID]
    sample_ids = pd.read_csv(data_dir / schema.SAMPLE_SUBMISSION, usecols=[schema.ID], dtype=str)[schema.ID]
    assert "0000600" in set(train_ids) and "1200001" in set(train_ids)
    for name in (run_files.FOLDS, run_files.LABELS):
        assert sorted(read_run_csv(run_dir / name)[schema.ID]) == sorted(train_ids), name
    assert sorted(read_run_csv(run_dir / run_files.OOF)[schema.ID]) == sorted(train_ids)
    # Written as text: the zero padding is in the file itself.
    assert "\n0000600," in (run_dir / run_files.FOLDS).read_text()
    submission = read_run_csv(run_dir / run_files.SUBMISSION)
    assert submission[schema.ID].tolist() == sample_ids.tolist()  # the sample's ids, in its order

    # resume=true compares folds.csv with the data's ids: a finished run resumes as is.
    train(compose_train([*overrides, f"paths.output_dir={run_dir}", "resume=true"]))
    pd.testing.assert_frame_equal(read_run_csv(run_dir / run_files.SUBMISSION), submission)

    from moa_lit.merge import merge
    from moa_lit.predict import predict
    from omegaconf import OmegaConf

    (run_dir / run_files.CONFIG).parent.mkdir(exist_ok=True)
    OmegaConf.save(cfg, run_dir / run_files.CONFIG)  # what Hydra writes for a command-line run
    merged = tmp_path / "merged"
    merge(OmegaConf.create({"runs": [str(run_dir)], "output_dir": str(merged)}))
    assert read_run_csv(merged / run_files.OOF)[schema.ID].tolist() == read_run_csv(run_dir / run_files.OOF)[schema.ID].tolist()

    out = tmp_path / "predictions.csv"
    predict(OmegaConf.create({"run_dir": str(run_dir), "input": str(data_dir / schema.TEST_FEATURES),
                              "output": str(out), "top_k": 2, "num_threads": 1}))
    predicted = read_run_csv(out)
    test_ids = pd.read_csv(data_dir / schema.TEST_FEATURES, usecols=[schema.ID], dtype=str)[schema.ID]
    assert predicted[schema.ID].tolist() == test_ids.tolist()
    by_id = submission.set_index(schema.ID).loc[test_ids]
    assert (predicted.set_index(schema.ID) - by_id).abs().max().max() < 1e-6
