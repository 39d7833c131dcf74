"""One rule for writing (issue 20, point 2): a command writes a folder it
creates or finds empty, its marker (run.json) first; a folder holding
anything else is refused, one holding a run is continued only by
``resume=true`` (there is no overwrite: replacing a run means deleting it).
A run folder is locked while a process writes it. The table of bad commands
(test_bad_commands.py) holds the one-line refusals of each command."""

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
from moa_lit.runs.manifest import FORMAT_VERSION
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


def test_a_folder_is_written_only_when_new_empty_or_marked_as_this_runs(tmp_path):
    import json
    import shutil

    from conftest import compose_train

    from moa_lit.cli import user_error
    from moa_lit.train import train

    folder = tmp_path / "run"
    overrides = [*tiny_run_overrides(tmp_path, n_samples=300, epochs=1, n_scored=20), "num_threads=1", f"paths.output_dir={folder}"]
    kaggle = [o for o in overrides if not o.startswith("data.")]  # the generator's keys are not the reader's
    with pytest.raises(Exception) as failed:  # fails after the folder was started
        train(compose_train([*kaggle, "data=kaggle", f"data.dir={tmp_path / 'nowhere'}"]))
    assert "data folder not found" in str(user_error(failed.value))
    # The marker was written first: the folder is this moa-lit's, and only resume=true goes on there.
    assert json.loads((folder / run_files.RUN_MANIFEST).read_text())["format_version"] == FORMAT_VERSION
    before = hashes(folder)
    with pytest.raises(MoAError, match=rf"paths.output_dir={folder} already holds a run; add resume=true to continue it, or delete it first"):
        train(compose_train(overrides))
    assert hashes(folder) == before
    with pytest.raises(MoAError, match="run.json: the run stopped before it read its data"):
        RunDir(folder).manifest()  # what predict and report say of it
    shutil.rmtree(folder)  # replacing a run: delete it first
    train(compose_train(overrides))
    assert (folder / run_files.OOF).is_file()
    # A folder of the user's files, even with resume=true: not a byte changed.
    theirs = tmp_path / "theirs"
    (theirs / "report").mkdir(parents=True)
    for name in ("labels.csv", "submission.csv", "report/notes.md"):
        (theirs / name).write_text("the user's\n")
    before = hashes(theirs)
    for extra in ([], ["resume=true"]):
        with pytest.raises(MoAError, match=rf"paths.output_dir={theirs} holds files moa-lit did not write there \(labels.csv, report, submission.csv\) and no run.json"):
            train(compose_train([*overrides, f"paths.output_dir={theirs}", *extra]))
        assert hashes(theirs) == before and sorted(p.name for p in theirs.iterdir()) == ["labels.csv", "report", "submission.csv"]


def test_a_run_of_another_format_version_is_one_line(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / run_files.RUN_MANIFEST).write_text('{"format_version": 2, "moa_lit_version": "0.9"}')
    (folder / run_files.SETTINGS).write_text("{}\n")
    for resume in (True, False, None):
        with pytest.raises(MoAError, match=r"run.json: run format version 2 \(written by moa-lit 0.9\); this moa-lit .* reads format \d+"):
            RunDir(folder).check_may_write("hydra.run.dir", resume)
    with pytest.raises(MoAError, match=r"run format version 2"):
        RunDir(folder).manifest()


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
