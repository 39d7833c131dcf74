"""Which device a run trains on. moa-lit scales over folds, seeds and search
trials (independent processes), not by splitting one model's batches over
several GPUs: a fold's tensors fit on one GPU many times over, and each of
several GPUs can train its own fold or trial instead."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from moa_lit.errors import MoAError

GPU_NAMES = ("gpu", "cuda")
SCALE_OUT = (
    "moa-lit trains one model per process on one device and scales over folds, seeds and trials instead: "
    "python -m moa_lit.train -m hydra/launcher=joblib_folds 'cv.folds=[0],[1],[2],[3],[4]' "
    "(each job gets its own GPU) or hparams_search=optuna"
)


def uses_gpu(trainer_cfg: DictConfig) -> bool:
    return str(trainer_cfg.get("accelerator", "cpu")) in GPU_NAMES


def _device_list(devices) -> list | None:
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        return list(devices)
    return None


def check_trainer_devices(trainer_cfg: DictConfig) -> None:
    """One device per run; a GPU run needs a GPU. One line otherwise."""
    accelerator = str(trainer_cfg.get("accelerator", "cpu"))
    if accelerator not in ("cpu", *GPU_NAMES):
        raise MoAError(f"trainer.accelerator={accelerator}: expected cpu or gpu")
    if accelerator in GPU_NAMES and not torch.cuda.is_available():
        raise MoAError(
            "trainer=gpu was requested but no CUDA GPU is available "
            "(torch.cuda.is_available() is False); use trainer=cpu"
        )
    devices = trainer_cfg.get("devices", 1)
    listed = _device_list(devices)
    one = devices == 1 or (listed is not None and len(listed) == 1)
    if isinstance(devices, bool) or not one:
        raise MoAError(f"trainer.devices={devices}: expected 1 (one device per run); {SCALE_OUT}")
    strategy = trainer_cfg.get("strategy", "auto")
    if strategy not in (None, "auto", "single_device"):
        raise MoAError(f"trainer.strategy={strategy}: data-parallel training is not supported; {SCALE_OUT}")
    if listed is not None and accelerator in GPU_NAMES:
        index = listed[0]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < torch.cuda.device_count():
            raise MoAError(
                f"trainer.devices={list(listed)}: expected [k] with k a visible GPU in 0..{torch.cuda.device_count() - 1}"
            )


def job_gpu(job_number: int, n_visible: int) -> int:
    """Round-robin over the visible GPUs, so parallel jobs (folds, trials) do not share one."""
    return int(job_number) % max(int(n_visible), 1)


def assign_job_gpu(cfg: DictConfig, job_number: int | None) -> None:
    """In a multirun on several GPUs, this job's own (unless the user chose one)."""
    if job_number is None or not uses_gpu(cfg.trainer) or _device_list(cfg.trainer.get("devices")) is not None:
        return
    n_visible = torch.cuda.device_count()
    if n_visible > 1:
        with open_dict(cfg):
            cfg.trainer.devices = [job_gpu(job_number, n_visible)]


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX): there
    bf16 autocast trains about 1.3x faster (docs/benchmarks.md); elsewhere
    torch emulates it, slower than float32. torch has no public call for it."""
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def resolved_precision(trainer_cfg: DictConfig) -> str:
    """``trainer.precision``, with ``auto`` as fp16 autocast on a GPU, bf16
    autocast on a CPU with native bf16 (same OOF within seed noise,
    docs/benchmarks.md), else float32. The config keeps ``auto``: the
    command a run or trial records rebuilds it."""
    precision = str(trainer_cfg.get("precision"))
    if precision != "auto":
        return precision
    if uses_gpu(trainer_cfg):
        return "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def training_device(trainer_cfg: DictConfig) -> torch.device:
    """Where the fold's tensors live: the trainer's GPU, or the CPU."""
    if not uses_gpu(trainer_cfg):
        return torch.device("cpu")
    listed = _device_list(trainer_cfg.get("devices"))
    return torch.device("cuda", int(listed[0]) if listed else torch.cuda.current_device())


class PeakGpuMemory:
    """Peak GPU memory allocated by torch while a fold ran (None on the CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.megabytes: float | None = None

    @contextmanager
    def measure(self) -> Iterator["PeakGpuMemory"]:
        if self.device.type != "cuda":
            yield self
            return
        torch.cuda.reset_peak_memory_stats(self.device)
        try:
            yield self
        finally:
            self.megabytes = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
