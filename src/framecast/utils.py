"""Small helpers shared across the package: atomic writes, seeding, process owners."""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success.

    Readers never see a half-written file: either the old file or the complete new one.
    The temporary file is removed if the body raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: it creates the file 0600 whatever the umask, and the rename would carry
    # that mode to datasets and checkpoints meant to be shared. O_EXCL with mode 0666 lets
    # the umask decide, as for any other file the user creates.
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 32 random bits
        raise FileExistsError(f"no free temporary name beside {path}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def replace_folder(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the finished folder ``source`` to ``target``, replacing what is there (a folder,
    a file or a link; a link is removed, never what it points to)."""
    target = Path(target)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    os.replace(source, target)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for reproducible runs."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def owner_record() -> dict:
    """This process as the owner of a lock or a staging folder: pid, host, start time."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def owner_exited(owner: dict) -> str | None:
    """Why the process in an :func:`owner_record` is known to be gone (it ran on this host
    and its pid has exited), or None when it may still run (here, or on another host)."""
    pid, host = owner.get("pid"), owner.get("host")
    if host == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid):
        return f"pid {pid} on {host} has exited"
    return None
