"""Output folders: safety checks, an exclusive run lock, one temp folder, clear OS errors.

Layout of an output folder ``OUT/`` while a run holds it::

    OUT/.medkt.lock      the run lock: JSON {pid, host, started, argv}; removed on exit
    OUT/.medkt-tmp/      temp files of atomic writes (swept when a run takes the folder)
    OUT/.medkt/          bookkeeping: done-markers (done/), the journal (journal.jsonl)

* :func:`prepare_output_dir` checks the path, creates it, takes the lock, *then* applies the
  emptiness / ``--overwrite`` / ``--resume`` policy, so two runs can never both pass the check.
* :class:`RunLock` uses ``fcntl.flock`` on ``OUT/.medkt.lock``: the kernel drops the lock when its
  process dies (even on SIGKILL), so a lock left by a killed run is never an obstacle.  Where
  ``flock`` is unsupported the file itself is the lock (``O_CREAT|O_EXCL``); a lock whose pid is
  dead on this host is then taken over.  A second run is refused with an :class:`OutputError`
  naming the holder (pid, host, start time, command line).
* Within one process the lock is re-entrant: preparing a folder this process already holds reuses
  the lock.  :func:`release_output_dir` (or process exit) releases it and removes the lock file.
* :func:`temp_dir_for` tells :func:`medkt.runs.atomic_path` where temp files go: ``OUT/.medkt-tmp``
  for any path inside a held folder, else the target's own folder (hidden name).
"""
from __future__ import annotations

import atexit
import errno
import json
import logging
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Iterable

from medkt.errors import OutputError

log = logging.getLogger("medkt")

LOCK_NAME = ".medkt.lock"
TMP_NAME = ".medkt-tmp"
STATE_NAME = ".medkt"
#: names a run creates for itself; a folder holding only these counts as empty
BOOKKEEPING = frozenset({LOCK_NAME, TMP_NAME})
#: temp files written by older medkt versions beside their targets
_LEGACY_TMP = re.compile(r"^\..+\.tmp(\..*)?$")

_HELD: dict[str, "RunLock"] = {}


# ----------------------------------------------------------------------------- OS errors
_OS_REASONS = {
    errno.EROFS: ("the file system is read-only", "choose an output folder on a writable disk"),
    errno.EACCES: ("permission denied", "choose a folder you can write to, or fix its permissions"),
    errno.EPERM: ("operation not permitted (the folder may be immutable, e.g. chattr +i)",
                  "choose another output folder, or lift the restriction (chattr -i)"),
    errno.ENOSPC: ("no space left on the device", "free some space or choose another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or choose another disk"),
    errno.ENOTDIR: ("a component of the path is a file, not a folder", "choose another output path"),
    errno.ENAMETOOLONG: ("the path is too long", "choose a shorter output path"),
    errno.ELOOP: ("the path is a symbolic link loop", "fix or remove the link"),
    errno.EEXIST: ("the path exists and is not a folder", "choose another output path"),
}


def output_os_error(err: OSError, path: str | Path, action: str) -> OutputError:
    """An :class:`OutputError` for an ``OSError`` raised while doing ``action`` on ``path``."""
    reason, hint = _OS_REASONS.get(err.errno, (err.strerror or str(err), "choose another output folder"))
    where = err.filename if err.filename else path
    return OutputError(f"cannot {action}: {reason}.", path=where, hint=hint)


# ----------------------------------------------------------------------------- input / output overlap
def _resolved(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError):
        return p.absolute()


def _is_within(child: Path, parent: Path) -> bool:
    try:
        _resolved(child).relative_to(_resolved(parent))
        return True
    except ValueError:
        return False


def check_not_inside_inputs(out_dir: str | Path, inputs: Iterable[str | Path]) -> None:
    """Raise :class:`OutputError` if ``out_dir`` lies inside an input folder, or inside the folder
    of a single input file (a later discovery of that folder would pick the outputs up)."""
    out = Path(out_dir)
    for inp in inputs:
        inp = Path(inp)
        if inp.is_dir() and _is_within(out, inp):
            raise OutputError(f"output folder {out} is inside the input folder {inp}; medkt never "
                              "writes into an input tree.",
                              hint="choose an output folder outside the input, e.g. a sibling folder")
        if inp.is_file() and _is_within(out, inp.parent):
            raise OutputError(f"output folder {out} is inside {inp.parent}, the folder of the input file "
                              f"{inp.name}; medkt never writes beside its inputs.",
                              hint=f"choose an output folder outside {inp.parent}")


# ----------------------------------------------------------------------------- the lock
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _holder_text(info: dict | None) -> str:
    if not info:
        return "another medkt run (no holder details recorded)"
    argv = " ".join(str(a) for a in info.get("argv") or [])
    return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
            + (f", command: {argv}" if argv else ""))


class RunLock:
    """Exclusive lock on an output folder (``folder/.medkt.lock``); see the module docstring."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.fd: int | None = None
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": list(sys.argv)}

    # -- helpers
    def _busy(self, info: dict | None) -> OutputError:
        return OutputError(f"output folder {self.folder} is in use by another medkt run ({_holder_text(info)}).",
                           hint=f"wait for that run to finish or choose another output folder; if that "
                                f"process is gone, remove {self.path}")

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None

    def _write_info(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(self.info) + "\n").encode())
        os.fsync(fd)

    # -- acquire / release
    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self._acquire_exclusive_file()
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise output_os_error(e, self.folder, "create the run lock in the output folder") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy(self._read()) from None
            except OSError:  # e.g. ENOLCK / EOPNOTSUPP on some network or FUSE file systems
                os.close(fd)
                return self._acquire_exclusive_file()
            try:  # the previous holder may have removed the file between our open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            old = self._read()
            if old and old.get("pid") != os.getpid():
                log.info("output folder %s: taking over the lock left by a run that ended without "
                         "releasing it (%s)", self.folder, _holder_text(old))
            self._write_info(fd)
            self.fd = fd
            return self
        raise OutputError(f"could not take the run lock of {self.folder} (it kept changing).",
                          hint="another medkt run is starting there; choose another output folder")

    def _acquire_exclusive_file(self) -> "RunLock":
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                info = self._read()
                stale = (info is not None and info.get("host") == socket.gethostname()
                         and isinstance(info.get("pid"), int) and not _pid_alive(info["pid"]))
                if not stale:
                    raise self._busy(info) from None
                log.warning("output folder %s: removing a stale run lock (%s is no longer running)",
                            self.folder, _holder_text(info))
                self.path.unlink(missing_ok=True)
                continue
            except OSError as e:
                raise output_os_error(e, self.folder, "create the run lock in the output folder") from None
            self._write_info(fd)
            self.fd = fd
            return self
        raise self._busy(self._read())

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still locked: nobody can take it in between
        except OSError:
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.fd = None


def _key(folder: Path) -> str:
    return str(_resolved(folder))


def lock_output_dir(folder: str | Path) -> RunLock:
    """Take (or, in this process, reuse) the run lock of ``folder``."""
    key = _key(Path(folder))
    held = _HELD.get(key)
    if held is not None and held.fd is not None:
        return held
    lock = RunLock(folder).acquire()
    _HELD[key] = lock
    return lock


def release_output_dir(folder: str | Path | None) -> None:
    """Release this process's lock on ``folder`` (no-op when it holds none); temp folder removed."""
    if folder is None:
        return
    lock = _HELD.pop(_key(Path(folder)), None)
    if lock is None:
        return
    sweep_temp(lock.folder, legacy=False, remove_dir=True)
    lock.release()


@atexit.register
def _release_all() -> None:
    for key in list(_HELD):
        lock = _HELD.pop(key)
        sweep_temp(lock.folder, legacy=False, remove_dir=True)
        lock.release()


def held_root(path: str | Path) -> Path | None:
    """The held output folder containing ``path``, if any."""
    if not _HELD:
        return None
    p = _resolved(Path(path))
    for key, lock in _HELD.items():
        if lock.fd is None:
            continue
        try:
            p.relative_to(key)
            return lock.folder
        except ValueError:
            continue
    return None


def temp_dir_for(path: str | Path) -> tuple[Path, bool]:
    """``(folder, hidden)`` for the temp file of an atomic write to ``path``: the held output
    folder's ``.medkt-tmp/`` (``hidden=False``), or ``path``'s own folder with a hidden name."""
    path = Path(path)
    root = held_root(path.parent)
    if root is None:
        return path.parent, True
    tmp = root / TMP_NAME
    tmp.mkdir(exist_ok=True)
    return tmp, False


def sweep_temp(folder: str | Path, *, legacy: bool = True, remove_dir: bool = False) -> int:
    """Remove leftover temp files of ``folder`` (its ``.medkt-tmp/`` and, with ``legacy``, the
    hidden ``.NAME.XXXX.tmp.SUFFIX`` files older versions left in it and its case folders).
    Returns how many were removed.  Only call it while holding the folder's lock."""
    folder = Path(folder)
    n = 0
    tmp = folder / TMP_NAME
    if tmp.is_dir():
        for p in list(tmp.iterdir()):
            try:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                n += 1
            except OSError as e:
                log.warning("cannot remove the temp file %s: %s", p, e.strerror)
        if remove_dir:
            try:
                tmp.rmdir()
            except OSError:
                pass
    if legacy:
        try:
            candidates = [folder, *(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))]
        except OSError:
            candidates = []
        for d in candidates:
            try:
                for p in d.iterdir():
                    if p.is_file() and _LEGACY_TMP.match(p.name):
                        p.unlink()
                        n += 1
            except OSError:
                continue
    if n:
        log.info("output folder %s: removed %d leftover temp file(s) of an interrupted run", folder, n)
    return n


# ----------------------------------------------------------------------------- prepare
def _clear_state(out: Path) -> None:
    """Forget earlier runs' bookkeeping (done-markers, journal): used by ``--overwrite``."""
    state = out / STATE_NAME
    for sub in ("done", "journal.jsonl"):
        p = state / sub
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def prepare_output_dir(out_dir: str | Path, inputs: Iterable[str | Path] = (), *,
                       overwrite: bool = False, resume: bool = False) -> Path:
    """Check ``out_dir``, create it, take its run lock, and apply the output policy.

    A folder that already holds anything (besides a stale lock or temp folder) is refused unless
    ``overwrite`` (outputs replaced; earlier done-markers and journal forgotten) or ``resume``
    (finished cases are skipped).  Leftover temp files are swept.  The lock is held until
    :func:`release_output_dir` or process exit.

    Raises:
        OutputError: inside an input, not a folder, a dangling link, busy (another run holds the
            lock), already holds results, or an OS error (read-only, permission, immutable...).
    """
    out = Path(out_dir).expanduser()
    check_not_inside_inputs(out, inputs)
    if out.is_symlink() and not out.exists():
        raise OutputError(f"the output path is a symbolic link to a missing target ({os.readlink(out)}).",
                          path=out, hint="create the link's target folder, or choose another output folder")
    if out.exists() and not out.is_dir():
        raise OutputError("the output path exists and is not a folder.", path=out, hint="pass a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_os_error(e, out, "create the output folder") from None
    newly = _key(out) not in _HELD
    lock_output_dir(out)
    try:
        try:
            entries = [e for e in os.listdir(out) if e not in BOOKKEEPING]
        except OSError as e:
            raise output_os_error(e, out, "list the output folder") from None
        if entries and not (overwrite or resume):
            raise OutputError(f"output folder {out} already holds results.",
                              hint="pass --resume to finish an interrupted run, --overwrite to replace it, "
                                   "or choose a new folder")
        if overwrite and not resume:
            _clear_state(out)
        sweep_temp(out)
    except BaseException:
        if newly:
            release_output_dir(out)
        raise
    return out
