"""CUDA autocast refuses some ops (torch.nn.functional.binary_cross_entropy
among them) that CPU autocast runs without a word, so a mixed-precision GPU run
could crash in its first validation step while every CPU test passes. This test
runs real training and validation steps of every model family, with
pretraining and stacking on, under CPU mixed precision, records the aten ops
executed inside the regions Lightning puts under autocast (its precision
plugin's ``forward_context``), and fails on any op CUDA autocast refuses."""

from __future__ import annotations

import ast
import inspect
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import compose_train, tiny_run_overrides
from moa_lit.train import train

# Always refused, whatever torch's list below says.
KNOWN_REFUSED = {"binary_cross_entropy"}


def cuda_autocast_refused_ops() -> set[str]:
    """The ops torch's own autocast tests list as banned under CUDA autocast
    (``AutocastTestLists.banned``). That module imports test-only packages,
    so its source is parsed rather than imported."""
    import torch.testing._internal as internal

    names = set(KNOWN_REFUSED)
    source = Path(inspect.getfile(internal)).with_name("autocast_test_lists.py")
    if not source.is_file():
        return names
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ClassDef) and node.name == "AutocastTestLists":
            for assign in ast.walk(node):
                if (
                    isinstance(assign, ast.Assign)
                    and any(isinstance(t, ast.Attribute) and t.attr == "banned" for t in assign.targets)
                    and isinstance(assign.value, ast.List)
                ):
                    for entry in assign.value.elts:
                        if isinstance(entry, ast.Tuple) and isinstance(entry.elts[0], ast.Constant):
                            names.add(entry.elts[0].value)
    return names


class OpRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func._schema.name.split("::")[-1])
        return func(*args, **(kwargs or {}))


@pytest.fixture
def autocast_ops(monkeypatch) -> set[str]:
    """Every aten op run inside Lightning's autocast regions during the test."""
    seen: set[str] = set()
    original = MixedPrecision.forward_context

    @contextmanager
    def recording_forward_context(self):
        with original(self):
            recorder = OpRecorder()
            with recorder:
                yield
            seen.update(recorder.ops)

    monkeypatch.setattr(MixedPrecision, "forward_context", recording_forward_context)
    return seen


def test_torch_lists_binary_cross_entropy_as_refused():
    assert "binary_cross_entropy" in cuda_autocast_refused_ops()


NETS = {
    "mlp": ["model=mlp"],
    "resnet": ["model=resnet", "model.net.hidden_size=32"],
    "cnn1d": ["model=cnn1d", "model.net.channels=8", "model.net.length=8", "model.net.conv_channels=16"],
    "linear": ["model=linear"],
    "tabm": ["model=tabm", "model.net.k=4", "model.net.hidden_size=16", "model.net.num_embeddings=piecewise",
             "model.net.n_bins=4", "model.net.d_embedding=2"],
}


@pytest.mark.parametrize("family", list(NETS))
def test_steps_under_autocast_use_only_ops_cuda_accepts(family, autocast_ops, tmp_path_factory, tmp_path):
    data = tmp_path_factory.getbasetemp() / "autocast_data"  # generated once for all families
    overrides = [o for o in tiny_run_overrides(data, n_samples=300, epochs=1, n_scored=20) if not o.startswith("model.")]
    if family in ("mlp",):
        overrides.append("model.net.hidden_size=64")
    cfg = compose_train(
        [
            *overrides,
            *NETS[family],
            "trainer.precision=bf16-mixed",
            "pretrain.enabled=true",
            "pretrain.max_epochs=1",
            "stack.enabled=true",
            "stack.max_epochs=1",
            "stack.inner_folds=2",
            "cv.folds=[0]",
            "num_threads=1",
            f"paths.output_dir={tmp_path / 'run'}",
        ]
    )
    train(cfg)
    # The regions were really recorded: the network's matrix products ran there...
    assert autocast_ops & {"addmm", "mm", "convolution", "linear"}, sorted(autocast_ops)
    # ...and so did the losses of training and validation.
    assert "binary_cross_entropy_with_logits" in autocast_ops, sorted(autocast_ops)
    refused = autocast_ops & cuda_autocast_refused_ops()
    assert not refused, f"{family}: ops CUDA autocast refuses ran under autocast: {sorted(refused)}"
