"""Run bookkeeping shared by every medkt command.

* :func:`atomic_write` / :func:`atomic_path` — outputs appear whole or not at all
  (temp file in the same folder, then ``os.replace``).
* :func:`prepare_output_dir` — refuses an output folder inside an input tree, and
  existing outputs without ``overwrite``/``resume``.
* :class:`RunRecord` — collects the resolved config, versions, weights, timings and
  per-case results and writes ``run.json`` beside the outputs.
* :class:`BatchRunner` — processes cases one by one, goes on past a failing case and
  records it, and with ``resume=True`` skips cases whose done-marker exists.
* :func:`seed_everything` — seeds Python, NumPy and torch, and asks torch for
  deterministic CPU kernels.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from medkt.errors import MedktError, OutputError

log = logging.getLogger("medkt")


# ----------------------------------------------------------------------------- atomic IO
@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    The temp file keeps the final suffix (``.nii.gz``, ``.png``...) so writers that infer
    the format from the extension work.  On error the temp file is removed and ``path``
    is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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
        w.writerow({k: r.get(k, "") for k in columns})
    return atomic_write(path, buf.getvalue())


# ----------------------------------------------------------------------------- output safety
def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def check_not_inside_inputs(out_dir: str | Path, inputs: Iterable[str | Path]) -> None:
    """Raise :class:`OutputError` if ``out_dir`` lies inside (or equals) any input folder."""
    out = Path(out_dir)
    for inp in inputs:
        inp = Path(inp)
        root = inp if inp.is_dir() else inp.parent
        if inp.is_dir() and _is_within(out, root):
            raise OutputError(f"output folder {out} is inside the input folder {root}; medkt never "
                              "writes into an input tree.",
                              hint="choose an output folder outside the input, e.g. a sibling folder")


def prepare_output_dir(out_dir: str | Path, inputs: Iterable[str | Path] = (), *,
                       overwrite: bool = False, resume: bool = False) -> Path:
    """Create ``out_dir`` after the safety checks.

    A non-empty ``out_dir`` is refused unless ``overwrite`` (outputs are replaced) or
    ``resume`` (finished cases are skipped) is set.
    """
    out = Path(out_dir)
    check_not_inside_inputs(out, inputs)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a folder.", hint="pass a folder path")
    if out.exists() and any(out.iterdir()) and not (overwrite or resume):
        raise OutputError(f"output folder {out} already holds results.",
                          hint="pass --resume to finish an interrupted run, --overwrite to replace it, "
                               "or choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


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
    """Everything needed to reproduce a run; written as ``run.json`` in the output folder."""

    command: str
    config: dict = field(default_factory=dict)
    seed: int | None = None
    weights: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    cases: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self._t0 = time.perf_counter()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    @contextlib.contextmanager
    def timer(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t

    def as_dict(self) -> dict:
        return {"command": self.command, "started": self.started, "argv": sys.argv,
                "seed": self.seed, "config": self.config, "weights": self.weights,
                "environment": environment_info(),
                "timings": {**self.timings, "total_s": time.perf_counter() - self._t0},
                "cases": self.cases, "failures": self.failures, **self.extra}

    def write(self, out_dir: str | Path, name: str = "run.json") -> Path:
        return atomic_write_json(Path(out_dir) / name, self.as_dict())


# ----------------------------------------------------------------------------- batches
@dataclass
class CaseResult:
    case_id: str
    status: str  # "ok", "failed", "skipped"
    reason: str = ""
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def row(self) -> dict:
        return {"case_id": self.case_id, "status": self.status, "reason": self.reason,
                "seconds": round(self.seconds, 4), **self.info}


class BatchRunner:
    """Run ``fn(case)`` for each case; failures are recorded, never fatal; resumable.

    A finished case leaves ``<out_dir>/.medkt/done/<case_id>.json`` (written last,
    atomically).  With ``resume=True`` those cases are skipped and their stored row is
    reused, so the final table is complete.
    """

    def __init__(self, out_dir: str | Path, *, resume: bool = False, record: RunRecord | None = None,
                 progress: bool = True):
        self.out_dir = Path(out_dir)
        self.done_dir = self.out_dir / ".medkt" / "done"
        self.resume = resume
        self.record = record
        self.progress = progress

    def _marker(self, case_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in case_id)
        return self.done_dir / f"{safe}.json"

    def is_done(self, case_id: str) -> bool:
        return self._marker(case_id).exists()

    def run(self, cases: list, fn: Callable[[Any], dict | None],
            case_id: Callable[[Any], str] = str) -> list[CaseResult]:
        results: list[CaseResult] = []
        iterator = cases
        if self.progress and len(cases) > 1:
            try:
                from tqdm.auto import tqdm
                iterator = tqdm(cases, desc="cases", unit="case", leave=False)
            except ImportError:  # pragma: no cover
                pass
        for case in iterator:
            cid = case_id(case)
            marker = self._marker(cid)
            if self.resume and marker.exists():
                stored = json.loads(marker.read_text())
                results.append(CaseResult(cid, "ok", "resumed: already finished",
                                          stored.get("seconds", 0.0), stored.get("info", {})))
                continue
            t = time.perf_counter()
            try:
                info = fn(case) or {}
            except MedktError as e:
                results.append(CaseResult(cid, "failed", e.format(), time.perf_counter() - t))
                log.warning("case %s failed: %s", cid, e.format())
                continue
            except Exception as e:  # noqa: BLE001 - a batch goes on past any bad case
                results.append(CaseResult(cid, "failed", f"{type(e).__name__}: {e}",
                                          time.perf_counter() - t))
                log.warning("case %s failed unexpectedly:\n%s", cid, traceback.format_exc())
                continue
            res = CaseResult(cid, "ok", "", time.perf_counter() - t, info)
            atomic_write_json(marker, {"case_id": cid, "seconds": res.seconds, "info": info})
            results.append(res)
        if self.record is not None:
            self.record.cases = [r.row() for r in results]
            self.record.failures = [{"case_id": r.case_id, "reason": r.reason}
                                    for r in results if r.status == "failed"]
        return results
