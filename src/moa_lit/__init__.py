"""moa-lit: mechanism-of-action prediction from cell responses.

In Python (a notebook), a finished run's final model predicts new profiles::

    import pandas as pd, moa_lit
    model = moa_lit.load_run("outputs/train/runs/2026-12-04_10-00-00")
    probs = model.predict_proba(pd.read_csv("test_features.csv"))
"""

__version__ = "0.1.0"

from moa_lit.errors import MoAError  # what bad input raises: one line naming the file or setting

__all__ = ["MoAError", "load_run"]


def load_run(path, device="cpu", final_model=None):
    """The final model of a finished run folder (training, merge, blend or
    ensemble): a :class:`moa_lit.training.final_model.RunModel` whose
    ``predict_proba(features_df)`` gives sig_id + one probability column per
    target, as the run's submission.csv. torch is imported on the first call,
    not by ``import moa_lit``."""
    from moa_lit.training.final_model import RunModel

    return RunModel.load(path, device, final_model)
