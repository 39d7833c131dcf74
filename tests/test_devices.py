"""One device per run: data-parallel settings are refused with the way to scale
out instead, parallel jobs get GPUs round-robin, and the divergence check reads
the loss from the device once per epoch, not once per step."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from conftest import run_cli
from moa_lit.training.callbacks import StopOnNonFiniteLoss, TrainingDivergedError
from moa_lit import devices
from moa_lit.devices import assign_job_gpu, check_trainer_devices, cpu_has_native_bf16, job_gpu, resolved_precision, training_device
from moa_lit.errors import MoAError


@pytest.mark.parametrize(
    "devices, strategy",
    [(2, "auto"), (-1, "auto"), ("auto", "auto"), ([0, 1], "auto"), (1, "ddp"), (1, "dp"), (1, "fsdp"), (True, "auto")],
)
def test_data_parallel_settings_are_refused_with_how_to_scale_out(devices, strategy):
    cfg = OmegaConf.create({"accelerator": "cpu", "devices": devices, "strategy": strategy})
    with pytest.raises(MoAError) as err:
        check_trainer_devices(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert "scales over folds, seeds and trials" in message and "hydra/launcher=joblib_folds" in message


def test_one_device_is_accepted():
    check_trainer_devices(OmegaConf.create({"accelerator": "cpu", "devices": 1}))
    check_trainer_devices(OmegaConf.create({"accelerator": "cpu", "devices": [0], "strategy": "auto"}))
    assert training_device(OmegaConf.create({"accelerator": "cpu", "devices": 1})).type == "cpu"


def test_cli_refuses_several_devices_in_one_line(tmp_path):
    proc = run_cli("moa_lit.train", ["trainer.devices=2", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("moa-lit: error: trainer.devices=2: expected 1 (one device per run)")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "oof.csv").exists()


def test_jobs_get_gpus_round_robin():
    assert [job_gpu(j, 4) for j in range(10)] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert [job_gpu(j, 1) for j in range(3)] == [0, 0, 0]


def test_a_multirun_job_on_a_machine_with_several_gpus_gets_its_own(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    cfg = OmegaConf.create({"trainer": {"accelerator": "gpu", "devices": 1}})
    assign_job_gpu(cfg, job_number=4)
    assert list(cfg.trainer.devices) == [1]
    chosen = OmegaConf.create({"trainer": {"accelerator": "gpu", "devices": [2]}})
    assign_job_gpu(chosen, job_number=4)  # the user's choice stands
    assert list(chosen.trainer.devices) == [2]
    single = OmegaConf.create({"trainer": {"accelerator": "gpu", "devices": 1}})
    assign_job_gpu(single, job_number=None)  # not a multirun: untouched
    assert single.trainer.devices == 1
    cpu = OmegaConf.create({"trainer": {"accelerator": "cpu", "devices": 1}})
    assign_job_gpu(cpu, job_number=4)
    assert cpu.trainer.devices == 1


class FakeTrainer:
    def __init__(self, n_batches: int) -> None:
        self.num_training_batches = n_batches
        self.current_epoch = 3


@pytest.fixture
def host_reads(monkeypatch) -> list[str]:
    """Counts every read of a tensor's value into Python (what stalls a GPU)."""
    reads: list[str] = []
    for name in ("__float__", "__int__", "__bool__", "item", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


def test_with_the_modules_epoch_sum_the_loss_is_not_touched_per_step(host_reads):
    class SummingModule:
        total = torch.zeros((), dtype=torch.float64)
        lr_setting = "model.scheduler.max_lr"  # the module names its own rate's key

        def epoch_loss_sum(self):
            return self.total

    callback = StopOnNonFiniteLoss(label="seed 0 fold 1")
    trainer, module = FakeTrainer(n_batches=5), SummingModule()
    for batch, value in enumerate([0.5, float("inf"), 0.4, 0.3]):
        module.total += value
        callback.on_train_batch_end(trainer, module, {"loss": torch.tensor(value)}, None, batch)
    assert host_reads == []
    with pytest.raises(TrainingDivergedError, match=r"^seed 0 fold 1: training loss became inf at epoch 3; .*lower model.scheduler.max_lr$"):
        callback.on_train_batch_end(trainer, module, {"loss": torch.tensor(0.2)}, None, 4)


@pytest.mark.parametrize(
    "flags, native",
    [("fpu sse avx512f avx512_bf16 avx512_vnni", True), ("fpu amx_tile amx_bf16", True), ("fpu sse avx2 avx512f", False)],
)
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_has_native_bf16(cpuinfo) is native
    assert cpu_has_native_bf16(tmp_path / "absent") is False  # not Linux: float32


@pytest.mark.parametrize(
    "accelerator, native, expected",
    [("cpu", True, "bf16-mixed"), ("cpu", False, "32-true"), ("gpu", False, "16-mixed")],
)
def test_auto_precision_follows_the_device(monkeypatch, accelerator, native, expected):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    assert resolved_precision(OmegaConf.create({"accelerator": accelerator, "precision": "auto"})) == expected
    # A precision the user chose is kept.
    assert resolved_precision(OmegaConf.create({"accelerator": accelerator, "precision": "32-true"})) == "32-true"
