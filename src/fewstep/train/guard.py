"""What keeps a training run's outputs safe: an OS advisory lock on `<out>.lock` while a run writes `out` (released
by the OS when the process ends, even on SIGKILL), and the refusal to overwrite a finished run or to write over an
input of the run itself."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

_HELD: dict[str, int] = {}  # lock path -> how many nested holds this process has (flock is per open file)


class OutputLocked(OSError):
    """Another process holds the lock of the output path (exit code 1 at the command line)."""


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of an output path: `<out>.lock` beside it."""
    p = Path(out)
    return p.with_name(p.name + ".lock")


def _other_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def hold(out: str | os.PathLike | None, option: str = "--out") -> Iterator[None]:
    """Hold an exclusive flock on `<out>.lock` (holding the PID) while the body runs; a second run on the same path
    fails at once naming the PID that holds it. Re-entrant within one process; None holds nothing."""
    if out is None:
        yield
        return
    path = lock_path(out)
    key = str(path.absolute())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            pid = _other_pid(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise OutputLocked(f"{option} {out} is being written by another run (PID {pid}, lock {path}); wait for "
                               f"it to finish or choose another {option}") from None
        try:  # the previous holder may have removed the file between our open and our lock: lock the new one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked, so no other run can hold a lock on the removed file
        os.close(fd)


def _same(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return Path(a).expanduser().absolute().resolve() == Path(b).expanduser().absolute().resolve()


def check_outputs(out: str | os.PathLike, ckpt: str | os.PathLike | None, resume: bool, overwrite: bool,
                  inputs: dict[str, str | os.PathLike | None] | None = None) -> None:
    """Refuse, before any work: an input (--ckpt, --init, --teacher: `inputs` maps option -> value) that is the
    output itself; --resume with --overwrite; and, without either, an output or checkpoint that already exists."""
    for option, value in {"--ckpt": ckpt, **(inputs or {})}.items():
        if value is not None and _same(value, out):
            raise ValueError(f"{option} is the same file as --out ({out}); the run would destroy it: give "
                             f"{option} another path")
    if resume and overwrite:
        raise ValueError("--resume continues the checkpoint and --overwrite starts afresh over it; give one of them")
    if resume or overwrite:
        return
    ckpt = Path(ckpt) if ckpt is not None else Path(out).with_suffix(".ckpt.pt")
    found = [str(p) for p in (Path(out), ckpt) if p.exists()]
    if found:
        raise ValueError(f"{' and '.join(found)} already exist{'s' if len(found) == 1 else ''} from an earlier run; "
                         "pass --resume to continue it, --overwrite to start afresh over it, or choose another --out")
