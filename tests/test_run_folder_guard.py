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
        with pytest.raises(MoAError, match=rf"^{folder} is being written by process {holder.pid} on \S+ since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d \S* \(-c {folder}\); wait"):
            with RunDir(folder).lock():
                pass
        # train on the locked folder: one line, exit 2, nothing of the holder's touched
        (folder / "mine.txt").write_text("the holder's\n")
        (folder / ".hydra").mkdir()
        (folder / run_files.CONFIG).write_text("the holder's config\n")
        before = hashes(folder)
        proc = run_cli("moa_lit.train", [*tiny_run_overrides(tmp_path), "num_threads=1", f"hydra.run.dir={folder}"], cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = [line for line in proc.stderr.splitlines() if line.startswith("moa-lit:")]
        assert len(lines) == 1 and f"is being written by process {holder.pid}" in lines[0], proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert hashes(folder) == before  # no byte: no .hydra/, no train.log (written once a run owns the folder)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunDir(folder).lock():  # the system dropped the killed holder's lock
        assert f'"pid": {os.getpid()},' in (folder / run_files.LOCK).read_text()  # (reading it keeps the lock)
        other = subprocess.run(  # another process: still held
            [sys.executable, "-c", "import sys; from moa_lit.runs.run_dir import RunDir\nwith RunDir(sys.argv[1]).lock(): pass", str(folder)],
            env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True,
        )
        assert f"is being written by process {os.getpid()} on " in other.stderr, other.stderr[-2000:]
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


def test_a_lock_left_by_a_dead_process_is_said_and_taken_over(tmp_path, caplog):
    import json
    import logging
    import socket

    folder = tmp_path / "run"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = {"pid": dead.pid, "host": socket.gethostname(), "command": "train.py resume=true", "started": "2026-01-02 03:04:05 UTC"}
    (folder / run_files.LOCK).write_text(json.dumps(left))  # a SIGKILL leaves the file, not the lock
    with caplog.at_level(logging.WARNING), RunDir(folder).lock():
        pass
    (line,) = [r.getMessage() for r in caplog.records if "took over" in r.getMessage()]
    assert line == (
        f"{folder}: took over the lock left by process {dead.pid} on {socket.gethostname()} since "
        "2026-01-02 03:04:05 UTC (train.py resume=true), no longer running"
    )
    # One process taking a folder it already writes is refused too (POSIX locks do not see it).
    with RunDir(folder).lock(), pytest.raises(MoAError, match="is being written by this process already"):
        with RunDir(folder).lock():
            pass


CRASH_IN_SWAP = """
import os, sys
from moa_lit.runs import run_dir
from moa_lit.runs.run_dir import RunDir
target, when = RunDir(sys.argv[1]), sys.argv[2]
real, calls = os.replace, []
def replace(a, b):
    calls.append(a)
    if when == "between" and len(calls) == 2:
        os._exit(9)  # killed between moving the old run aside and moving the new one in
    real(a, b)
run_dir.os.replace = replace
if when == "before_cleanup":
    real_rmtree = run_dir.shutil.rmtree
    run_dir.shutil.rmtree = lambda p, **k: os._exit(9) if ".old-" in str(p) else real_rmtree(p, **k)
with target.replaced_when_done() as out:
    (out.path / "oof.csv").parent.mkdir(parents=True, exist_ok=True)
    (out.path / "oof.csv").write_text("new\\n")
    if when == "writing":
        os._exit(9)
"""


@pytest.mark.parametrize(
    "when, said, content",
    [
        ("between", "finished the overwrite=true replacement that process", "new\n"),
        ("before_cleanup", "the run that process", "new\n"),
        ("writing", "an unfinished overwrite=true output of process", "old\n"),
    ],
)
def test_an_overwrite_cut_short_is_put_right_by_the_next_command(tmp_path, caplog, when, said, content):
    import logging

    target = tmp_path / "merged"
    target.mkdir()
    (target / run_files.OOF).write_text("old\n")
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, "-c", CRASH_IN_SWAP, str(target), when], env=env)
    assert done.returncode == 9
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) > 1, left  # something was left aside
    with caplog.at_level(logging.WARNING), RunDir(target).lock():  # what merge, blend and train take first
        pass
    lines = [r.getMessage() for r in caplog.records if str(target) in r.getMessage()]
    assert len(lines) == 1 and said in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
    assert (target / run_files.OOF).read_text() == content


def test_a_run_folder_moved_aside_with_no_new_output_is_restored(tmp_path, caplog):
    import logging

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    aside = tmp_path / f".merged.old-{dead.pid}"
    aside.mkdir()
    (aside / run_files.OOF).write_text("old\n")
    target = tmp_path / "merged"
    target.mkdir()  # as Hydra makes a run folder before train runs
    with caplog.at_level(logging.WARNING), RunDir(target).lock():
        pass
    assert [r.getMessage() for r in caplog.records if "restored" in r.getMessage()]
    assert (target / run_files.OOF).read_text() == "old\n" and not aside.exists()
