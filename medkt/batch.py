"""Batches of cases: :class:`BatchRunner` runs ``fn(case)`` for each case, goes on past failures,
journals each finished case and resumes interrupted runs (also importable from :mod:`medkt.runs`).

Files in the output folder ``OUT/``:

* ``OUT/.medkt/done/<case_id>.json``: the done-marker of a finished case (written last, atomically;
  it stores the case's row and source files);
* ``OUT/.medkt/journal.jsonl``: one line per finished case (see :mod:`medkt.journal`);
* ``OUT/run.json`` and, with ``table=``, ``OUT/<table>``: rewritten after each case, so a kill
  leaves a true record of the finished cases (at most the last one missing).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from medkt import runs
from medkt.errors import InputError, MedktError
from medkt.runs import RunRecord, atomic_write_json, write_csv

log = logging.getLogger("medkt")


@dataclass
class CaseResult:
    case_id: str
    status: str  # "ok", "failed", "skipped"
    reason: str = ""
    seconds: float = 0.0
    info: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def row(self) -> dict:
        row = {"case_id": self.case_id, "status": self.status, "reason": self.reason,
               "seconds": round(self.seconds, 4), **self.info}
        # warnings the case returned (e.g. RescaleSlope 0) + those logged while it ran, once each
        merged = list(dict.fromkeys([*(self.info.get("warnings") or []), *self.warnings]))
        if merged:
            row["warnings"] = merged
        else:
            row.pop("warnings", None)
        return row


class _WarningCollector(logging.Handler):
    """Collects WARNING+ messages of the ``medkt`` loggers while one case runs."""

    MAX = 20

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = " ".join(record.getMessage().split())
        except Exception:  # noqa: BLE001 - a bad log call must not fail the case
            msg = str(record.msg)
        if len(self.messages) < self.MAX and msg not in self.messages:
            self.messages.append(msg[:300])


@contextlib.contextmanager
def _collect_warnings() -> Iterator[list[str]]:
    handler = _WarningCollector()
    logger = logging.getLogger("medkt")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    if len(msg) > 300:
        msg = msg[:297] + "..."
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


class BatchRunner:
    """Run ``fn(case)`` for each case; failures are recorded, never fatal; resumable.

    A finished case leaves ``<out_dir>/.medkt/done/<case_id>.json`` (written last,
    atomically; it names the case's source files).  With ``resume=True`` those cases are
    skipped and their stored row is reused, so the final table is complete; a marker whose
    sources differ from the case's is ignored (the case runs again).

    With a ``record``, every finished case is appended to the journal and ``run.json`` (and,
    with ``table``, e.g. ``"cases.csv"``, the table of every case) is rewritten after each case,
    so a kill leaves a true record.  WARNING messages logged under ``medkt`` while a case runs are
    recorded in its row (``warnings``).  Case ids must be unique (case-insensitively).
    """

    def __init__(self, out_dir: str | Path, *, resume: bool = False, record: RunRecord | None = None,
                 progress: bool = True, table: str | None = None):
        self.out_dir = Path(out_dir)
        self.done_dir = self.out_dir / ".medkt" / "done"
        self.resume = resume
        self.record = record
        self.progress = progress
        self.table = table
        self._last_cost: float | None = None
        self._last_end = 0.0
        self._pending = False

    def _marker(self, case_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in case_id).lstrip(".") or "case"
        if safe != case_id:  # sanitising merged characters: keep distinct ids distinct
            safe = f"{safe}-{hashlib.sha1(case_id.encode()).hexdigest()[:10]}"
        return self.done_dir / f"{safe}.json"

    def is_done(self, case_id: str) -> bool:
        return self._marker(case_id).exists()

    @staticmethod
    def _sources(case) -> list[str] | None:
        paths = getattr(case, "paths", None)
        return [str(p) for p in paths] if paths else None

    def _stored(self, case, cid: str) -> dict | None:
        marker = self._marker(cid)
        if not marker.exists():
            return None
        try:
            stored = json.loads(marker.read_text())
        except (OSError, ValueError):
            log.warning("case %s: its done-marker is unreadable; processing it again", cid)
            return None
        if stored.get("case_id", cid) != cid or (
                stored.get("source") is not None and stored["source"] != self._sources(case)):
            log.warning("case %s: the done-marker belongs to other input files; processing it again", cid)
            return None
        return stored

    #: rewrite run.json / the table after a case unless the last rewrite is more recent than
    #: THROTTLE x its own cost: bookkeeping stays under ~1/THROTTLE of the run time even for
    #: thousands of fast cases (the journal still gets every case at once)
    THROTTLE = 10.0

    def _checkpoint(self, results: list[CaseResult], *, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and self._last_cost is not None and now - self._last_end < self.THROTTLE * self._last_cost:
            self._pending = True
            return
        self._write_checkpoint(results)
        self._last_end = time.perf_counter()
        self._last_cost, self._pending = self._last_end - now, False

    def _write_checkpoint(self, results: list[CaseResult]) -> None:
        rows = [r.row() for r in results]
        if self.record is not None:
            self.record.cases = rows
            self.record.failures = [{"case_id": r.case_id, "reason": r.reason}
                                    for r in results if r.status == "failed"]
            rows = self.record.case_rows()
        if self.table:
            write_csv(self.out_dir / self.table, rows)
        if self.record is not None:
            self.record.write(self.out_dir, final=False)

    def pending(self, cases: list, case_id: Callable[[Any], str] = str) -> list:
        """The cases :meth:`run` will process (with ``resume``, those without a valid done-marker),
        in order: lets an executor start them all before :meth:`run` collects the results."""
        if not self.resume:
            return list(cases)
        return [c for c in cases if self._stored(c, case_id(c)) is None]

    def run(self, cases: list, fn: Callable[[Any], dict | None],
            case_id: Callable[[Any], str] = str) -> list[CaseResult]:
        ids = [case_id(c) for c in cases]
        seen: dict[str, str] = {}
        for cid in ids:
            if cid.casefold() in seen:
                raise InputError(f"two cases share the id '{cid}' (ids must differ, also by case only: "
                                 f"'{seen[cid.casefold()]}').", hint="give every case a distinct case_id")
            seen[cid.casefold()] = cid
        journal = self.record.attach(self.out_dir, resume=self.resume) if self.record is not None else None
        results: list[CaseResult] = []
        iterator = list(zip(cases, ids))
        if self.progress and len(cases) > 1:
            try:
                from tqdm.auto import tqdm
                iterator = tqdm(iterator, desc="cases", unit="case", leave=False)
            except ImportError:  # pragma: no cover
                pass
        try:
            for case, cid in iterator:
                marker = self._marker(cid)
                stored = self._stored(case, cid) if self.resume else None
                if stored is not None:
                    res = CaseResult(cid, "ok", "resumed: already finished", stored.get("seconds", 0.0),
                                     stored.get("info", {}))
                    results.append(res)
                    if journal is not None:
                        journal.case(res.row(), resumed=True)
                    self._pending = True
                    continue
                t = time.perf_counter()
                with _collect_warnings() as warned:
                    try:
                        info = fn(case) or {}
                        res = CaseResult(cid, "ok", "", time.perf_counter() - t, info)
                    except MedktError as e:
                        res = CaseResult(cid, "failed", e.format(), time.perf_counter() - t)
                    except Exception as e:  # noqa: BLE001 - a batch goes on past any bad case
                        res = CaseResult(cid, "failed", _one_line(e), time.perf_counter() - t)
                        if runs.DEBUG:
                            log.error("case %s failed unexpectedly:\n%s", cid, traceback.format_exc())
                        else:
                            log.debug("case %s failed unexpectedly:\n%s", cid, traceback.format_exc())
                res.warnings = list(warned)
                if res.status == "failed":
                    log.warning("case %s failed: %s", cid, res.reason.splitlines()[0] if res.reason else "")
                else:
                    atomic_write_json(marker, {"case_id": cid, "seconds": res.seconds, "info": res.info,
                                               "source": self._sources(case)})
                results.append(res)
                if journal is not None:
                    journal.case(res.row())
                self._checkpoint(results)
        finally:  # also on Ctrl-C / SIGTERM: the record shows every finished case
            if self._pending:
                self._checkpoint(results, force=True)
        if self.record is not None:
            self.record.cases = [r.row() for r in results]
            self.record.failures = [{"case_id": r.case_id, "reason": r.reason}
                                    for r in results if r.status == "failed"]
        return results
