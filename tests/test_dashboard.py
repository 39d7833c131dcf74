"""optuna-dashboard (the dashboard extra) serves a study the way a search
writes it: started on loopback against a real SQLite study, its API lists the
study with its trials and best value."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_optuna_dashboard_reads_a_study_on_loopback(tmp_path):
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard (the dashboard extra) is not installed")
    command = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or shutil.which("optuna-dashboard")
    assert command, "optuna-dashboard is installed but its command is not on PATH"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="moa_mlp", storage=storage, direction="minimize")
    study.optimize(lambda t: (t.suggest_float("model.scheduler.max_lr", 1e-3, 3e-2, log=True) - 0.01) ** 2, n_trials=3)

    port = free_port()
    server = subprocess.Popen([command, storage, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, body = time.monotonic() + 60, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    body = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.3)
        assert body is not None, f"optuna-dashboard did not answer: {server.stdout.read() if server.poll() is not None else ''}"
        (entry,) = body["study_summaries"]
        assert entry["study_name"] == "moa_mlp" and entry["directions"] == ["minimize"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{entry['study_id']}", timeout=10) as response:
            detail = json.loads(response.read())
        assert [t["number"] for t in detail["trials"]] == [0, 1, 2]
        assert [t["values"] for t in detail["best_trials"]] == [[pytest.approx(study.best_value)]]
    finally:
        server.terminate()
        server.wait(timeout=30)
