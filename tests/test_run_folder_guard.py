"""Outputs never overwrite inputs or another run (issue 12, point 1): a run
folder is locked while a process writes it; merge and blend refuse an output
folder that is one of their runs or holds another run (``overwrite=true``
replaces it, only once the new output is complete); a folder whose run
trained nothing can take a new run without ``resume=true``. The table of bad
commands (test_bad_commands.py) holds the one-line refusals of each command."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli, tiny_run_overrides

from moa_lit.errors import MoAError
from moa_lit.runs import files as run_files
from moa_lit.runs.run_dir import RunDir

SRC = str(Path(__file__).resolve().parents[1] / "src")


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock until killed."""
    code = (
        "import sys, time\n"
        "from moa_lit.runs.run_dir import RunDir\n"
        "with RunDir(sys.argv[1]).lock():\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_gets_one_line_naming_the_holder_and_a_killed_holder_leaves_no_lock(tmp_path):
    folder = tmp_path / "run"
    holder = hold_lock(folder)
    try:
        with pytest.raises(MoAError, match=rf"^{folder} is being written by process {holder.pid} on \S+ \(-c {folder}\); wait"):
            with RunDir(folder).lock():
                pass
        # train on the locked folder: one line, exit 2, nothing of the holder's touched
        (folder / "mine.txt").write_text("the holder's\n")
        before = hashes(folder)
        proc = run_cli("moa_lit.train", [*tiny_run_overrides(tmp_path), "num_threads=1", f"hydra.run.dir={folder}"], cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = [line for line in proc.stderr.splitlines() if line.startswith("moa-lit:")]
        assert len(lines) == 1 and f"is being written by process {holder.pid}" in lines[0], proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        after = {k: v for k, v in hashes(folder).items() if not k.startswith(".hydra/") and not k.endswith(".log")}
        assert after == before  # (Hydra records the command in .hydra/ before any of our code runs)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunDir(folder).lock():  # the system dropped the killed holder's lock
        assert f"process {os.getpid()} " in (folder / run_files.LOCK).read_text()
    assert not (folder / run_files.LOCK).exists()  # removed when released


def test_a_folder_whose_run_trained_nothing_takes_a_new_run(tmp_path):
    from conftest import compose_train

    from moa_lit.train import train

    folder = tmp_path / "run"
    overrides = [*tiny_run_overrides(tmp_path, n_samples=300, epochs=1, n_scored=20), "num_threads=1", f"paths.output_dir={folder}"]
    from moa_lit.cli import user_error

    kaggle = [o for o in overrides if not o.startswith("data.")]  # the generator's keys are not the reader's
    with pytest.raises(Exception) as failed:  # fails after the folder was started
        train(compose_train([*kaggle, "data=kaggle", f"data.dir={tmp_path / 'nowhere'}"]))
    assert "data folder not found" in str(user_error(failed.value))
    assert (folder / run_files.SETTINGS).is_file() and RunDir(folder).holds_a_run()
    train(compose_train(overrides))  # no resume=true needed: nothing was trained there
    assert (folder / run_files.OOF).is_file()
    # A folder with a checkpoint (an interrupted fold) is work: resume=true or a new folder.
    other = tmp_path / "interrupted"
    (other / "models" / "seed0" / "fold0").mkdir(parents=True)
    (other / run_files.SETTINGS).write_text("{}\n")
    (other / "models" / "seed0" / "fold0" / run_files.LAST_CHECKPOINT).write_bytes(b"x")
    before = hashes(other)
    with pytest.raises(MoAError, match="already holds a run; add resume=true"):
        train(compose_train([*overrides, f"paths.output_dir={other}"]))
    assert hashes(other) == before


def test_resuming_a_finished_run_with_fewer_folds_or_seeds_is_refused(tmp_path):
    from conftest import compose_train

    from moa_lit.train import train

    folder = tmp_path / "run"
    overrides = [*tiny_run_overrides(tmp_path, n_samples=300, epochs=1, n_scored=20), "num_threads=1", f"paths.output_dir={folder}"]
    train(compose_train(overrides))
    before = hashes(folder)
    for subset, named in (("cv.folds=[0]", r"folds \[1\]"), ("seeds=[1]", r"seeds \[0\]")):
        with pytest.raises(MoAError, match=rf"holds a finished run over folds \[0, 1\] and seeds \[0\]; resuming without {named} would replace"):
            train(compose_train([*overrides, "resume=true", subset]))
        assert hashes(folder) == before
    oof = (folder / run_files.OOF).read_bytes()
    train(compose_train([*overrides, "resume=true", "cv.folds=[0,1]"]))  # all of them: reused as they are
    assert (folder / run_files.OOF).read_bytes() == oof
