"""Output-side faults (issue 14): concurrent runs, colliding case ids, temp files, file modes, the
journal, one-line errors, prompt checks, the applied modality, and a SIGKILL-and-resume crash test.

Each test names the failure kind it guards; each fails on the code before the fix.
"""
from __future__ import annotations

import csv
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medkt import io as mio
from medkt.cli.main import main
from medkt.errors import ConfigError, InputError, OutputError
from medkt.outdir import LOCK_NAME, TMP_NAME, RunLock, release_output_dir
from medkt.runs import BatchRunner, RunRecord, atomic_path, atomic_write, prepare_output_dir, set_debug

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _nifti(path: Path, value: int = 1, shape=(6, 5, 2)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full(shape, value, np.int16), np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(autouse=True)
def _release_locks(tmp_path):
    yield
    for p in tmp_path.rglob(LOCK_NAME):
        release_output_dir(p.parent)
    set_debug(False)


# ----------------------------------------------------------------------------- 1. the run lock
HOLD = textwrap.dedent("""
    import sys, time
    from medkt.runs import prepare_output_dir
    prepare_output_dir(sys.argv[1], resume=True)
    print("ready", flush=True)
    time.sleep(120)
""")


def _holder(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, cwd=ROOT,
                            env=_env(), text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_second_run_into_a_held_folder_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "out"
    proc = _holder(out)
    try:
        with pytest.raises(OutputError, match=f"in use by another medkt run \\(pid {proc.pid} on "):
            prepare_output_dir(out)
        # through the CLI: one message, the holder named, no traceback
        (tmp_path / "in").mkdir()
        Image = pytest.importorskip("PIL.Image")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "in" / "a.png")
        rc = main(["segment", str(tmp_path / "in"), "-o", str(out), "--prompt", "x", "--config", "tiny"])
        err = capsys.readouterr().err
        assert rc == 2 and f"pid {proc.pid}" in err and "Traceback" not in err
    finally:
        proc.kill()
        proc.wait()
    # the killed holder left its lock file; the kernel dropped its lock: the folder is usable
    assert (out / LOCK_NAME).exists()
    prepare_output_dir(out)
    release_output_dir(out)
    assert not (out / LOCK_NAME).exists() and not (out / TMP_NAME).exists()


def test_lock_is_exclusive_and_released(tmp_path):
    tmp_path.joinpath("o").mkdir()
    a = RunLock(tmp_path / "o").acquire()
    with pytest.raises(OutputError, match=f"pid {os.getpid()} on {socket.gethostname()}"):
        RunLock(tmp_path / "o").acquire()
    a.release()
    assert not (tmp_path / "o" / LOCK_NAME).exists()
    RunLock(tmp_path / "o").acquire().release()


def test_stale_lock_file_without_flock_is_taken_over_only_for_a_dead_pid(tmp_path, monkeypatch):
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_flock)
    folder = tmp_path / "o"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info = {"pid": dead.pid, "host": socket.gethostname(), "started": "earlier", "argv": ["medkt", "segment"]}
    (folder / LOCK_NAME).write_text(json.dumps(info))
    lock = RunLock(folder).acquire()                              # dead pid on this host: stale
    assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    (folder / LOCK_NAME).write_text(json.dumps({**info, "pid": os.getppid()}))   # alive: refused
    with pytest.raises(OutputError, match=f"pid {os.getppid()}"):
        RunLock(folder).acquire()
    (folder / LOCK_NAME).write_text(json.dumps({**info, "host": "another-host"}))  # other host: refused
    with pytest.raises(OutputError, match="another-host"):
        RunLock(folder).acquire()


def test_lock_is_released_when_the_process_exits(tmp_path):
    out = tmp_path / "out"
    code = "import sys; from medkt.runs import prepare_output_dir, atomic_write; " \
           "o = prepare_output_dir(sys.argv[1]); atomic_write(o / 'x.txt', 'x')"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, cwd=ROOT, env=_env())
    assert sorted(os.listdir(out)) == ["x.txt"]


# ----------------------------------------------------------------------------- 2. case ids
def test_colliding_names_give_distinct_ids_and_done_markers(tmp_path):
    inp = tmp_path / "in"
    for name in ("a b.nii", "a_b.nii", "a_b_nii_1.nii", "A.nii", "a.nii", "run.json.nii"):
        _nifti(inp / name)
    cases = mio.discover_cases(inp)
    ids = [c.case_id for c in cases]
    assert len(ids) == 6
    assert len({i.casefold() for i in ids}) == 6, ids          # distinct, also on a case-insensitive disk
    assert "a_b_nii_1" in ids and "run.json" not in ids
    out = prepare_output_dir(tmp_path / "out", [inp])

    def fn(case):
        vol = mio.read_case(case)
        mio.write_mask(np.ones(vol.spatial_shape, np.uint8), vol, out / case.case_id / "mask.nii.gz")
    runner = BatchRunner(out, progress=False)
    results = runner.run(cases, fn, case_id=lambda c: c.case_id)
    assert [r.status for r in results] == ["ok"] * 6
    assert len(list(out.glob("*/mask.nii.gz"))) == 6
    assert len(list((out / ".medkt" / "done").glob("*.json"))) == 6
    # a marker names its sources: a case is never resumed from another file's marker
    assert {tuple(json.loads(p.read_text())["source"]) for p in (out / ".medkt" / "done").glob("*.json")} == \
        {(str(c.paths[0]),) for c in cases}


def test_ids_that_sanitise_alike_get_distinct_markers_and_duplicates_are_refused(tmp_path):
    runner = BatchRunner(tmp_path, progress=False)
    assert runner._marker("a b") != runner._marker("a_b") != runner._marker("a/b")
    with pytest.raises(InputError, match="share the id"):
        runner.run(["x", "X"], lambda c: {})


# ----------------------------------------------------------------------------- 3. temp files
def test_temp_files_live_in_medkt_tmp_and_are_swept(tmp_path):
    out = prepare_output_dir(tmp_path / "out")
    with atomic_path(out / "case" / "mask.nii.gz") as tmp:
        assert tmp.parent == out / TMP_NAME and tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"x")
    assert (out / "case" / "mask.nii.gz").read_bytes() == b"x"
    # leftovers of a killed run: in .medkt-tmp, and an older medkt's hidden temp beside an output
    (out / TMP_NAME / "mask.nii.gz.1234.tmp.nii.gz").write_bytes(b"partial")
    (out / "case" / ".mask.nii.gz.ab12.tmp.nii.gz").write_bytes(b"partial")
    release_output_dir(out)
    assert not (out / TMP_NAME).exists()
    prepare_output_dir(out, resume=True)
    assert not list(out.rglob("*.tmp*"))
    assert (out / "case" / "mask.nii.gz").exists()


def test_discovery_never_takes_temp_or_hidden_files_as_cases(tmp_path):
    inp = tmp_path / "in"
    _nifti(inp / "scan.nii.gz")
    _nifti(inp / ".scan.nii.gz.x1y2.tmp.nii.gz")             # a killed write, a valid NIfTI prefix
    _nifti(inp / TMP_NAME / "mask.nii.gz.9.tmp.nii.gz")
    _nifti(inp / ".medkt" / "done" / "other.nii.gz")
    cases = mio.discover_cases(inp)
    assert [c.case_id for c in cases] == ["scan"]
    assert [p.name for p, why in cases.skipped] == [".scan.nii.gz.x1y2.tmp.nii.gz"]
    assert "temp file" in cases.skipped[0][1]


# ----------------------------------------------------------------------------- 4. file modes
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_get_the_umask_modes(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        out = prepare_output_dir(tmp_path / "out")
        atomic_write(out / "a.txt", "x")
        vol = mio.volume_from_array(np.zeros((3, 3, 2)), np.eye(4))
        mio.write_mask(np.ones((3, 3, 2), np.uint8), vol, out / "c" / "mask.nii.gz")
        atomic_write(tmp_path / "elsewhere" / "b.txt", "x")     # outside any run folder too
    finally:
        os.umask(old)
    for p in (out / "a.txt", out / "c" / "mask.nii.gz", tmp_path / "elsewhere" / "b.txt"):
        assert (p.stat().st_mode & 0o777) == mode, p


# ----------------------------------------------------------------------------- 5. the journal
@pytest.mark.parametrize("throttle", [BatchRunner.THROTTLE, 1e9])   # 1e9: only the first and the flush
def test_a_killed_batch_leaves_a_true_record_and_resume_merges_invocations(tmp_path, monkeypatch, throttle):
    monkeypatch.setattr(BatchRunner, "THROTTLE", throttle)
    inp = tmp_path / "in"
    for i in range(4):
        _nifti(inp / f"case{i}.nii.gz", i)
    cases = mio.discover_cases(inp)
    out = prepare_output_dir(tmp_path / "out", [inp])

    def interrupted(case):
        if case.case_id == "case2":
            raise KeyboardInterrupt     # stands for a kill: nothing after this point runs
        if case.case_id == "case1":
            raise ValueError("bad\nvalue")
        return {"v": 1}
    with pytest.raises(KeyboardInterrupt):
        BatchRunner(out, record=RunRecord("test"), progress=False, table="cases.csv").run(
            cases, interrupted, case_id=lambda c: c.case_id)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "in progress"
    assert [(c["case_id"], c["status"]) for c in run["cases"]] == [("case0", "ok"), ("case1", "failed")]
    assert [r["case_id"] for r in _rows(out / "cases.csv")] == ["case0", "case1"]
    release_output_dir(out)

    out = prepare_output_dir(out, [inp], resume=True)
    rec = RunRecord("test")
    BatchRunner(out, resume=True, record=rec, progress=False, table="cases.csv").run(
        cases, lambda c: {"v": 2}, case_id=lambda c: c.case_id)
    rec.write(out)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished"
    assert [(i["invocation"], i["status"]) for i in run["invocations"]] == [(1, "interrupted"), (2, "finished")]
    assert run["invocations"][0]["counts"] == {"ok": 1, "failed": 1, "resumed": 0}
    assert run["invocations"][1]["counts"] == {"ok": 3, "failed": 0, "resumed": 1}
    assert [(c["case_id"], c["status"]) for c in run["cases"]] == [(f"case{i}", "ok") for i in range(4)]
    assert run["failures"] == []
    assert [r["status"] for r in _rows(out / "cases.csv")] == ["ok"] * 4


def test_warnings_logged_during_a_case_are_recorded_in_its_row(tmp_path):
    import logging
    out = prepare_output_dir(tmp_path / "out")
    rec = RunRecord("t")

    def fn(case):
        if case == "b":
            logging.getLogger("medkt.io").warning("RescaleSlope is 0: constant image")
        return {}
    BatchRunner(out, record=rec, progress=False, table="cases.csv").run(["a", "b"], fn)
    rec.write(out)
    rows = {r["case_id"]: r for r in _rows(out / "cases.csv")}
    assert rows["a"]["warnings"] == "" and rows["b"]["warnings"] == "RescaleSlope is 0: constant image"
    run = json.loads((out / "run.json").read_text())
    assert run["cases"][1]["warnings"] == ["RescaleSlope is 0: constant image"]  # a list in run.json, " | "-joined in the CSV


def test_overwrite_forgets_earlier_done_markers_and_journal(tmp_path):
    out = prepare_output_dir(tmp_path / "out")
    BatchRunner(out, record=RunRecord("t"), progress=False).run(["a"], lambda c: {})
    release_output_dir(out)
    out = prepare_output_dir(out, overwrite=True)
    assert not (out / ".medkt" / "done").exists() and not (out / ".medkt" / "journal.jsonl").exists()


# ----------------------------------------------------------------------------- 6. one-line errors
@pytest.mark.parametrize("err, words", [(errno.EROFS, "read-only"), (errno.EPERM, "immutable"),
                                        (errno.EACCES, "permission denied")])
def test_output_folder_os_errors_are_one_clear_message(tmp_path, monkeypatch, capsys, err, words):
    def refuse(self, *a, **k):
        raise OSError(err, os.strerror(err), str(self))
    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(OutputError, match=words):
        prepare_output_dir(tmp_path / "ro" / "out")
    monkeypatch.undo()
    (tmp_path / "in").mkdir()
    _nifti(tmp_path / "in" / "a.nii")
    monkeypatch.setattr(Path, "mkdir", refuse)
    rc = main(["segment", str(tmp_path / "in"), "-o", str(tmp_path / "ro" / "out"), "--prompt", "x",
               "--config", "tiny"])
    err_text = capsys.readouterr().err
    assert rc == 2 and words in err_text and "Traceback" not in err_text
    assert err_text.splitlines()[0].startswith("medkt segment: error: ")


def test_dangling_symlink_and_file_as_output_are_refused(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(OutputError, match="symbolic link to a missing target"):
        prepare_output_dir(link)
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        prepare_output_dir(tmp_path / "f")


def test_output_beside_a_single_input_file_is_refused(tmp_path):
    scan = _nifti(tmp_path / "data" / "scan.nii")
    with pytest.raises(OutputError, match="folder of the input file scan.nii"):
        prepare_output_dir(tmp_path / "data" / "results", [scan])
    prepare_output_dir(tmp_path / "results", [scan])          # a sibling of the data folder is fine


def test_unexpected_exception_in_a_batch_is_one_line_unless_debug(tmp_path, caplog):
    out = prepare_output_dir(tmp_path / "out")

    def boom(case):
        raise TypeError("unsupported\noperand")
    with caplog.at_level("WARNING", logger="medkt"):
        (res,) = BatchRunner(out, progress=False).run(["a"], boom)
    assert res.status == "failed" and res.reason == "TypeError: unsupported operand"
    assert "Traceback" not in caplog.text
    caplog.clear()
    set_debug(True)
    with caplog.at_level("WARNING", logger="medkt"):
        BatchRunner(out, progress=False).run(["b"], boom)
    assert "Traceback" in caplog.text


def test_cli_turns_unexpected_and_os_errors_into_one_line(tmp_path, monkeypatch, capsys):
    import medkt.segmentation.api as api

    def crash(*a, **k):
        raise RuntimeError("something\nbroke")
    monkeypatch.setattr(api, "segment", crash)
    args = ["segment", str(tmp_path), "-o", str(tmp_path / "o"), "--prompt", "x"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: something broke" in err and "--debug" in err
    with pytest.raises(RuntimeError):
        main(["--debug", *args])

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "run.json"))
    monkeypatch.setattr(api, "segment", disk_full)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.json: No space left on device" in err


# ----------------------------------------------------------------------------- 7, 8. prompts, modality
@pytest.fixture(scope="module")
def segmenter():
    from medkt.segmentation.pipeline import Segmenter, load_segment_config
    return Segmenter(load_segment_config("tiny"))


def test_whitespace_prompt_is_refused_before_models_load(tmp_path, monkeypatch):
    import medkt.segmentation.api as api

    def no_models(*a, **k):
        raise AssertionError("models were loaded")
    monkeypatch.setattr(api, "Segmenter", no_models)
    _nifti(tmp_path / "in" / "a.nii")
    for prompt in (" \t\n ", ""):
        with pytest.raises(ConfigError, match="prompt"):
            api.segment(tmp_path / "in", prompt, output=tmp_path / "out", config="tiny")
    assert not (tmp_path / "out").exists()


def test_long_prompt_is_truncated_with_a_recorded_warning_and_modality_is_the_applied_one(tmp_path, segmenter):
    from medkt.segmentation.api import segment
    _nifti(tmp_path / "in" / "vol.nii.gz", shape=(12, 10, 2))
    prompt = "a lung nodule " * 200
    res = segment(tmp_path / "in", prompt, output=tmp_path / "out", config="tiny", modality="ct",
                  segmenter=segmenter)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    (warning,) = [w for w in run["warnings"] if "truncated" in w]
    assert "reads only 32" in warning
    assert run["prompt_truncated"]["context_length"] == 32 and run["prompt_truncated"]["tokens"] > 32
    (row,) = _rows(tmp_path / "out" / "cases.csv")
    assert row["modality"] == "CT" and res.table[0]["modality"] == "CT"
    short = segment(tmp_path / "in", "a lung nodule", output=tmp_path / "out2", config="tiny",
                    segmenter=segmenter)
    assert not short.record["warnings"] and "prompt_truncated" not in short.record


# ----------------------------------------------------------------------------- 9. SIGKILL mid-write, resume
# The child process counts the renames of atomic writes; at the chosen write it cuts the temp file
# short and SIGKILLs itself: a real kill with a half-written file on disk.
KILL_HOOK = textwrap.dedent("""
    import os, signal, sys
    import medkt.runs as runs
    n_writes, kill_at, kill_name = [0], int(sys.argv[1]), sys.argv[2]
    real = runs._replace
    def replace(tmp, path):
        n_writes[0] += 1
        if path.name.startswith(kill_name) and n_writes[0] >= kill_at:
            with open(tmp, "r+b") as f:
                f.truncate(max(1, os.path.getsize(tmp) // 2))
            os.kill(os.getpid(), signal.SIGKILL)
        real(tmp, path)
    runs._replace = replace
""")

BATCH = KILL_HOOK + textwrap.dedent("""
    from pathlib import Path
    import numpy as np
    from medkt import io as mio
    from medkt.runs import BatchRunner, RunRecord, prepare_output_dir
    inp, out = Path(sys.argv[3]), Path(sys.argv[4])
    out = prepare_output_dir(out, [inp])
    def fn(case):
        vol = mio.read_case(case)
        mio.write_mask((vol.array > 0).astype(np.uint8), vol, out / case.case_id / "mask.nii.gz")
        return {"voxels": int((vol.array > 0).sum())}
    rec = RunRecord("crash-test")
    BatchRunner.THROTTLE = 0    # rewrite run.json / cases.csv after every case: a fixed write sequence
    BatchRunner(out, record=rec, progress=False, table="cases.csv").run(
        mio.discover_cases(inp), fn, case_id=lambda c: c.case_id)
    rec.write(out)
""")


def _leftovers(out: Path) -> list[Path]:
    """Hidden files or folders outside medkt's bookkeeping folder ``.medkt/`` (temp files, lock)."""
    return [p.relative_to(out) for p in out.rglob("*")
            if p.name.startswith(".") and p.relative_to(out).parts[0] != ".medkt"]


# writes per case: mask, done-marker, cases.csv, run.json; die in the 2nd case's output or record write
@pytest.mark.parametrize("kill_name", ["mask", "run.json"])
def test_batch_killed_during_a_write_resumes_to_complete_loadable_outputs(tmp_path, kill_name):
    inp = tmp_path / "in"
    for i in range(4):
        _nifti(inp / f"case{i}.nii.gz", i + 1)
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", BATCH, "5", kill_name, str(inp), str(out)], cwd=ROOT,
                            env=_env(), capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list((out / TMP_NAME).iterdir())                      # the half-written temp file is there
    with pytest.raises(OutputError, match="--resume"):
        prepare_output_dir(out, [inp])
    out = prepare_output_dir(out, [inp], resume=True)
    assert not (out / TMP_NAME).exists() or not list((out / TMP_NAME).iterdir())   # swept
    rec = RunRecord("crash-test")
    calls = []

    def fn(case):
        calls.append(case.case_id)
        vol = mio.read_case(case)
        mio.write_mask((vol.array > 0).astype(np.uint8), vol, out / case.case_id / "mask.nii.gz", overwrite=True)
        return {"voxels": int((vol.array > 0).sum())}
    results = BatchRunner(out, resume=True, record=rec, progress=False, table="cases.csv").run(
        mio.discover_cases(inp), fn, case_id=lambda c: c.case_id)
    rec.write(out)
    release_output_dir(out)
    assert [r.status for r in results] == ["ok"] * 4 and calls and "case0" not in calls
    for i in range(4):
        assert np.asarray(nib.load(out / f"case{i}" / "mask.nii.gz").dataobj).all()
    rows = _rows(out / "cases.csv")
    assert [r["case_id"] for r in rows] == [f"case{i}" for i in range(4)]
    assert all(int(r["voxels"]) == 60 for r in rows)
    run = json.loads((out / "run.json").read_text())
    assert [i["status"] for i in run["invocations"]] == ["interrupted", "finished"]
    assert _leftovers(out) == []


SEGMENT = KILL_HOOK + textwrap.dedent("""
    from medkt.cli.main import main
    sys.exit(main(sys.argv[3:]))
""")


def _png_folder(root: Path, n: int) -> Path:
    from PIL import Image
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = (rng.random((24, 32)) * 80).astype(np.uint8)
        a[6:14, 8:20] = 230
        Image.fromarray(a).save(root / f"img{i}.png")
    return root


@pytest.mark.slow
def test_medkt_segment_killed_during_a_write_then_resumed(tmp_path, capsys):
    from PIL import Image
    inp = _png_folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    args = ["segment", str(inp), "-o", str(out), "--prompt", "a bright square", "--config", "tiny"]
    env = {**_env(), "MEDKT_HOME": os.environ.get("MEDKT_HOME", str(tmp_path / "home"))}
    # writes per case: mask, saliency, overlay, done-marker, cases.csv, run.json: dies in case 2's mask
    killed = subprocess.run([sys.executable, "-c", SEGMENT, "7", "mask", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (out / LOCK_NAME).exists() and list((out / TMP_NAME).iterdir())
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "in progress" and [c["case_id"] for c in run["cases"]] == ["img0"]
    assert [r["case_id"] for r in _rows(out / "cases.csv")] == ["img0"]
    assert main(args) == 2 and "--resume" in capsys.readouterr().err          # a plain rerun is refused
    assert main([*args, "--resume"]) == 0
    rows = _rows(out / "cases.csv")
    assert [r["case_id"] for r in rows] == ["img0", "img1", "img2"] and {r["status"] for r in rows} == {"ok"}
    for i in range(3):
        d = out / f"img{i}"
        assert np.asarray(Image.open(d / "mask.png")).shape == (24, 32)
        assert np.load(d / "saliency.npy").shape == (24, 32)
        Image.open(d / "overlay.png").load()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and [i["status"] for i in run["invocations"]] == ["interrupted", "finished"]
    assert run["invocations"][1]["counts"] == {"ok": 2, "failed": 0, "resumed": 1}
    assert _leftovers(out) == []
