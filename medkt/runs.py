"""Run bookkeeping shared by every medkt command.

* :func:`atomic_write` / :func:`atomic_path` — outputs appear whole or not at all
  (temp file in ``OUT/.medkt-tmp/``, then ``os.replace``).
* :func:`prepare_output_dir` (from :mod:`medkt.outdir`) — refuses an output folder inside an
  input, takes the folder's run lock, then refuses existing outputs without
  ``overwrite``/``resume``.
* :class:`RunRecord` — collects the resolved config, versions, weights, timings, warnings and
  per-case results and writes ``run.json`` beside the outputs, merged over every invocation
  from the journal (:mod:`medkt.journal`).
* :class:`BatchRunner` — processes cases one by one, goes on past a failing case and
  records it, journals each finished case (``run.json`` / the table are rewritten after each),
  and with ``resume=True`` skips cases whose done-marker exists.
* :func:`seed_everything` — seeds Python, NumPy and torch, and asks torch for
  deterministic CPU kernels.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import os
import platform
import random
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from medkt.outdir import check_not_inside_inputs, prepare_output_dir, release_output_dir, temp_dir_for

__all__ = ["atomic_path", "atomic_write", "atomic_write_json", "write_csv", "to_json", "check_not_inside_inputs",
           "prepare_output_dir", "release_output_dir", "RunRecord", "seed_everything", "torch_generator",
           "set_debug", "package_versions", "environment_info"]

log = logging.getLogger("medkt")

#: ``medkt --debug``: a case that fails unexpectedly logs its full traceback (else one line).
DEBUG = False


def set_debug(on: bool) -> None:
    global DEBUG
    DEBUG = bool(on)


# ----------------------------------------------------------------------------- atomic IO
def _new_temp(folder: Path, name: str, suffix: str, hidden: bool) -> Path:
    """Create an empty temp file; ``os.open(..., 0o666)`` lets the umask set its mode."""
    stem = ("." if hidden else "") + name[:80]
    for _ in range(100):
        tmp = folder / f"{stem}.{secrets.token_hex(4)}.tmp{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "cannot create a unique temp file", str(folder))


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        # the target folder is another mount than the temp folder: copy beside it, then rename
        near = _new_temp(path.parent, path.name, "", hidden=True)
        try:
            shutil.copyfile(tmp, near)
            os.replace(near, path)
        finally:
            near.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path; on success it is renamed onto ``path``.

    The temp file lives in the output folder's ``.medkt-tmp/`` when ``path`` is inside a folder
    this process holds (:func:`prepare_output_dir`), else beside ``path`` with a hidden name.  It
    keeps the final suffix (``.nii.gz``, ``.png``...) so writers that infer the format from the
    extension work, and gets the umask's mode (like any new file).  On error the temp file is
    removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    folder, hidden = temp_dir_for(path)
    tmp_path = _new_temp(folder, path.name, suffix, hidden)
    try:
        yield tmp_path
        _replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path``."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)
    return Path(path)


def _json_default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        from medkt.config import to_dict
        return to_dict(o)
    return repr(o)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_json_default, allow_nan=True)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, to_json(obj) + "\n")


def write_csv(path: str | Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Atomically write ``rows`` (dicts) as CSV; columns default to the union in first-seen order."""
    if columns is None:
        columns = []
        for r in rows:
            for k in r:
                if k not in columns:
                    columns.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (" | ".join(map(str, v)) if isinstance(v := r.get(k, ""), (list, tuple)) else v)
                    for k in columns})
    return atomic_write(path, buf.getvalue())


# ----------------------------------------------------------------------------- output safety
# prepare_output_dir / check_not_inside_inputs / release_output_dir live in medkt.outdir
# (run lock, temp folder); they are re-exported here, where callers have always found them.


# ----------------------------------------------------------------------------- versions / seeds
def package_versions(names: Iterable[str] = ("torch", "torchvision", "numpy", "monai", "transformers",
                                             "open_clip_torch", "segment-anything", "nibabel", "pydicom",
                                             "scikit-image", "highdicom", "medkt")) -> dict[str, str | None]:
    from importlib import metadata
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def environment_info() -> dict:
    info = {"python": sys.version.split()[0], "platform": platform.platform(),
            "packages": package_versions()}
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return info


def process_resources() -> dict:
    """This process's peak resident memory so far (MiB) and CPU seconds (all threads).

    The peak covers the whole process (in a long Python session, every run before this one
    too); ``None`` where the platform has no ``resource`` module (Windows).
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return {"peak_rss_mib": None, "cpu_s": round(time.process_time(), 2)}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak_mib = peak / 2**20 if sys.platform == "darwin" else peak / 1024
    return {"peak_rss_mib": round(peak_mib, 1), "cpu_s": round(time.process_time(), 2)}


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed ``random``, NumPy and torch; request deterministic kernels (CPU paths are exact)."""
    random.seed(seed)
    try:
        import numpy as np
        np.random.seed(seed % (2**32))
    except ImportError:  # pragma: no cover
        pass
    import torch
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def torch_generator(seed: int, device="cpu"):
    import torch
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


# ----------------------------------------------------------------------------- run.json
@dataclass
class RunRecord:
    """Everything needed to reproduce a run; written as ``run.json`` in the output folder.

    Once attached to an output folder (by :class:`BatchRunner` or the first :meth:`write`), the
    record journals to ``OUT/.medkt/journal.jsonl`` and ``run.json`` lists every invocation into
    that folder (``invocations``) and the latest row of every case from all of them (``cases``).
    ``status`` is ``in progress`` until the final :meth:`write` (a run.json that still says so
    with no run holding the folder's lock was interrupted), then ``finished``.
    """

    command: str
    config: dict = field(default_factory=dict)
    seed: int | None = None
    weights: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    cases: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def __post_init__(self):
        self._t0 = time.perf_counter()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._journal = None
        self._env: dict | None = None

    @contextlib.contextmanager
    def timer(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t

    def warn(self, message: str) -> None:
        """Log ``message`` as a WARNING and record it in run.json ``warnings``."""
        log.warning("%s", message)
        if message not in self.warnings:
            self.warnings.append(message)

    # -- journal
    def attach(self, out_dir: str | Path, *, resume: bool = False):
        """Start this invocation's journal in ``out_dir`` (once); returns the :class:`~medkt.journal.Journal`."""
        from medkt.journal import Journal
        if self._env is None:  # once, up front (it may import torch): not inside a per-case rewrite
            self._env = environment_info()
        if self._journal is None or self._journal.path.parents[1] != Path(out_dir):
            self._journal = Journal(out_dir, self.command, self.started, resume=resume)
        return self._journal

    @property
    def journal(self):
        return self._journal

    def case_rows(self) -> list[dict]:
        """Rows of every case: merged over all invocations when journaled, else :attr:`cases`."""
        if self._journal is not None and self._journal.case_ids:
            return self._journal.fold()[1]
        return list(self.cases)

    def as_dict(self) -> dict:
        if self._env is None:
            self._env = environment_info()
        cases, failures = self.cases, self.failures
        d = {"command": self.command, "started": self.started, "argv": sys.argv,
             "seed": self.seed, "config": self.config, "weights": self.weights, "environment": self._env,
             "timings": {**self.timings, "total_s": time.perf_counter() - self._t0},
             "resources": process_resources()}
        if self._journal is not None:
            invocations, merged = self._journal.fold()
            if self._journal.case_ids:
                cases = merged
                failures = [{"case_id": r.get("case_id"), "reason": r.get("reason", "")}
                            for r in merged if r.get("status") == "failed"]
            d["status"] = "finished" if self._journal.ended else "in progress"
            d["invocations"] = invocations
        return {**d, "warnings": self.warnings, "cases": cases, "failures": failures, **self.extra}

    def write(self, out_dir: str | Path, name: str = "run.json", *, final: bool = True) -> Path:
        """Write ``run.json``; ``final=False`` for a mid-run checkpoint (status ``in progress``).

        The final write ends the journal's invocation and releases this process's run lock on
        ``out_dir`` (see :func:`medkt.outdir.release_output_dir`): the run is over.
        """
        journal = self.attach(out_dir)
        if final:
            journal.end(time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        path = atomic_write_json(Path(out_dir) / name, self.as_dict())
        if final:
            release_output_dir(out_dir)
        return path


# ----------------------------------------------------------------------------- batches
def __getattr__(name: str):
    """:class:`BatchRunner` and :class:`CaseResult` live in :mod:`medkt.batch` (imported on use)."""
    if name in ("BatchRunner", "CaseResult"):
        from medkt import batch
        return getattr(batch, name)
    raise AttributeError(f"module 'medkt.runs' has no attribute '{name}'")
