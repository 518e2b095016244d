"""The run journal: ``OUT/.medkt/journal.jsonl``, append-only JSON lines, one per event.

Events (each a JSON object on one line, flushed and fsync'ed when written):

* ``{"event": "start", "invocation": N, "command", "started", "argv", "pid", "host", "resume"}``
* ``{"event": "case", "invocation": N, "row": {...}}``: a case finished (``ok`` or ``failed``);
* ``{"event": "end", "invocation": N, "finished", "counts": {...}}``.

A kill can cut only the last line short; :func:`read_events` skips a line that does not parse.
:meth:`Journal.fold` merges every invocation into one view (the latest row of each case, and
the list of invocations with their status: ``finished``, ``interrupted`` or ``in progress``),
which :class:`medkt.runs.RunRecord` writes as ``run.json`` and ``cases.csv`` after each case.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path

log = logging.getLogger("medkt")

JOURNAL = Path(".medkt") / "journal.jsonl"


def read_events(path: str | Path) -> list[dict]:
    """All parsable events of the journal at ``path`` (missing file: ``[]``)."""
    out = []
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            log.info("%s: skipping a truncated journal line (interrupted write)", path)
            continue
        if isinstance(ev, dict) and "event" in ev:
            out.append(ev)
    return out


class Journal:
    """One invocation's view of the journal of ``out_dir`` (earlier events are read once)."""

    def __init__(self, out_dir: str | Path, command: str, started: str, *, resume: bool = False):
        self.path = Path(out_dir) / JOURNAL
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.events = read_events(self.path)
        self.case_ids = {str(e["row"].get("case_id")) for e in self.events
                         if e["event"] == "case" and isinstance(e.get("row"), dict)}
        self.invocation = 1 + max((int(e.get("invocation", 0)) for e in self.events), default=0)
        self.counts = {"ok": 0, "failed": 0, "resumed": 0}
        self._end_partial_line()
        self.ended = False
        self._append({"event": "start", "invocation": self.invocation, "command": command, "started": started,
                      "argv": list(sys.argv), "pid": os.getpid(), "host": socket.gethostname(),
                      "resume": bool(resume)})

    def _end_partial_line(self) -> None:
        """A kill mid-append leaves a last line without its newline: end it, so the next event
        starts on a line of its own (the cut line is then skipped when read)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
        except OSError:  # missing or empty
            return
        if last != b"\n":
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("\n")

    def _append(self, event: dict) -> None:
        from medkt.runs import _json_default
        line = json.dumps(event, default=_json_default, allow_nan=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.events.append(event)

    def case(self, row: dict, *, resumed: bool = False) -> None:
        """Record a case: finished (``row["status"]`` ``ok`` or ``failed``) or, with ``resumed``,
        skipped because an earlier invocation finished it (its row then comes from the done-marker)."""
        key = "resumed" if resumed else row.get("status", "ok")
        self.counts[key] = self.counts.get(key, 0) + 1
        self._append({"event": "case", "invocation": self.invocation, "row": row, "resumed": bool(resumed)})
        self.case_ids.add(str(row.get("case_id")))

    def end(self, finished: str) -> None:
        if not self.ended:
            self._append({"event": "end", "invocation": self.invocation, "finished": finished,
                          "counts": dict(self.counts)})
            self.ended = True

    def fold(self) -> tuple[list[dict], list[dict]]:
        """``(invocations, cases)``: every invocation with its status and counts, and the latest
        row of every case (in order of first appearance)."""
        inv: dict[int, dict] = {}
        rows: dict[str, dict] = {}
        for e in self.events:
            n = int(e.get("invocation", 0))
            if e["event"] == "start":
                inv[n] = {k: e.get(k) for k in ("invocation", "command", "started", "argv", "pid", "host", "resume")}
                inv[n].update(finished=None, status="interrupted", counts={"ok": 0, "failed": 0, "resumed": 0})
            elif e["event"] == "case" and isinstance(e.get("row"), dict):
                row = e["row"]
                cid = str(row.get("case_id"))
                rows[cid] = row
                if n in inv:
                    c = inv[n]["counts"]
                    key = "resumed" if e.get("resumed") else row.get("status", "ok")
                    c[key] = c.get(key, 0) + 1
            elif e["event"] == "end" and n in inv:
                inv[n].update(finished=e.get("finished"), status="finished", counts=e.get("counts", {}))
        cur = inv.get(self.invocation)
        if cur is not None and not self.ended:
            cur.update(status="in progress", counts=dict(self.counts))
        return [inv[k] for k in sorted(inv)], list(rows.values())
