"""An in-memory file system that records every operation, and can produce
each state a crash after any prefix of them may leave on disk.

It implements the interface of ``fs.py``, so ``Storage`` runs on it
unchanged. The crash model (after ALICE and CrashMonkey), for a crash
after operation ``n``:

* File data: everything written to a file before its last fsync (or
  fdatasync) survives. Of the writes after it, each 512-byte sector holds
  its content as of before them, or as of just after any one of them (so
  writes are dropped, reordered and torn at sector boundaries, never within
  a sector). A size change after the last fsync survives or not.
* Directories: creates, renames and unlinks before the directory's last
  fsync survive; each one after it survives or not, independently (applied
  in order; one whose source is gone does nothing). A rename is atomic.
* Directories themselves (``makedirs``) are durable at once: the model is
  about the files in a data directory.

``crash_states(n, limit, rng)`` yields the distinct states, as
``{path: bytes}``: all of them when there are at most ``limit``, else the
extremes (everything lost, everything kept), each single choice flipped
from those, and random combinations from ``rng``. ``MemFS(files)`` mounts
one, to open the storage on it. ``fail`` injects disk errors.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import random
from collections.abc import Callable, Iterator

SECTOR = 512


class MemFile:
    __slots__ = ("fs", "path", "ino", "closed")

    def __init__(self, fs: MemFS, path: str, ino: int):
        self.fs, self.path, self.ino, self.closed = fs, path, ino, False

    def pwrite(self, data: bytes, offset: int) -> None:
        self.fs._check("pwrite", self.path)
        data = bytes(data)
        img = self.fs.data[self.ino]
        if len(img) < offset:
            img.extend(bytes(offset - len(img)))
        img[offset : offset + len(data)] = data
        self.fs.ops.append(("write", self.ino, offset, data))

    def allocate(self, size: int) -> None:
        self.fs._check("allocate", self.path)
        img = self.fs.data[self.ino]
        if len(img) < size:
            img.extend(bytes(size - len(img)))
            self.fs.ops.append(("size", self.ino, size))

    def datasync(self) -> None:
        self.fs._check("datasync", self.path)
        self.fs.ops.append(("sync", self.ino))

    sync = datasync

    def close(self) -> None:
        self.closed = True


class _NoLock:
    def release(self) -> None:
        pass


class MemFS:
    def __init__(self, files: dict[str, bytes] | None = None):
        self.names: dict[str, int] = {}
        self.data: dict[int, bytearray] = {}
        self.dirs: set[str] = set()
        for path, content in (files or {}).items():
            ino = len(self.data)
            self.names[path] = ino
            self.data[ino] = bytearray(content)
            self.dirs.add(os.path.dirname(path))
        self._base_names = dict(self.names)
        self._base_data = {ino: bytes(b) for ino, b in self.data.items()}
        self.ops: list[tuple] = []
        # fail(call, path) -> OSError or None: the disk refusing an operation.
        self.fail: Callable[[str, str], OSError | None] | None = None

    # -- the fs.py interface ---------------------------------------------------------

    def lock(self, data_dir: str) -> _NoLock:
        return _NoLock()

    def makedirs(self, path: str) -> None:
        self.dirs.add(path)

    def listdir(self, path: str) -> list[str]:
        if path not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        return sorted(os.path.basename(p) for p in self.names if os.path.dirname(p) == path)

    def exists(self, path: str) -> bool:
        return path in self.names or path in self.dirs

    def read(self, path: str) -> bytes:
        if path not in self.names:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return bytes(self.data[self.names[path]])

    def size(self, path: str) -> int:
        return len(self._image(path))

    def read_range(self, path: str, offset: int, n: int) -> bytes:
        return bytes(self._image(path)[offset : offset + n])

    def _image(self, path: str) -> bytearray:
        if path not in self.names:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return self.data[self.names[path]]

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> MemFile:
        self._check("open", path)
        if path in self.names:
            if create and exclusive:
                raise FileExistsError(errno.EEXIST, "file exists", path)
            ino = self.names[path]
            if create and self.data[ino]:
                self.data[ino] = bytearray()
                self.ops.append(("size", ino, 0))
            return MemFile(self, path, ino)
        if not create:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        if os.path.dirname(path) not in self.dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        ino = len(self.data)
        self.data[ino] = bytearray()
        self.names[path] = ino
        self.ops.append(("link", os.path.dirname(path), path, ino))
        return MemFile(self, path, ino)

    def rename(self, src: str, dst: str) -> None:
        self._check("rename", src)
        if src not in self.names:
            raise FileNotFoundError(errno.ENOENT, "no such file", src)
        self.names[dst] = self.names.pop(src)
        self.ops.append(("rename", os.path.dirname(dst), src, dst))

    def unlink(self, path: str) -> None:
        self._check("unlink", path)
        if path not in self.names:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        del self.names[path]
        self.ops.append(("unlink", os.path.dirname(path), path))

    def sync_dir(self, path: str) -> None:
        self._check("sync_dir", path)
        self.ops.append(("dirsync", path))

    def _check(self, call: str, path: str) -> None:
        if self.fail is not None:
            err = self.fail(call, path)
            if err is not None:
                raise err

    # -- crash states ------------------------------------------------------------------

    def files(self) -> dict[str, bytes]:
        """The volatile state: what a reader sees now (and what survives a
        crash after everything was synced)."""
        return {p: bytes(self.data[ino]) for p, ino in self.names.items()}

    def describe(self, n: int) -> str:
        """Operation ``n`` in words (for reports)."""
        if n >= len(self.ops):
            return "the end"
        op = self.ops[n]
        paths = {ino: p for p, ino in itertools.chain(self._base_names.items(), self.names.items())}
        for o in self.ops:
            if o[0] == "link":
                paths.setdefault(o[3], o[2])
        def name(ino: int) -> str:
            return os.path.basename(paths.get(ino, f"inode {ino}"))

        base = os.path.basename
        words = {
            "write": lambda: f"write {len(op[3])} bytes at {op[2]} of {name(op[1])}",
            "size": lambda: f"resize {name(op[1])} to {op[2]}",
            "sync": lambda: f"fsync {name(op[1])}",
            "link": lambda: f"create {base(op[2])}",
            "rename": lambda: f"rename {base(op[2])} to {base(op[3])}",
            "unlink": lambda: f"unlink {base(op[2])}",
            "dirsync": lambda: f"fsync directory {op[1]}",
        }
        return words[op[0]]()

    def crash_point(self, n: int) -> CrashPoint:
        return CrashPoint(self, n)

    def crash_states(self, n: int, limit: int, rng: random.Random) -> Iterator[dict[str, bytes]]:
        yield from self.crash_point(n).states(limit, rng)


class CrashPoint:
    """The choices a crash after ``ops[:n]`` leaves open: one axis per
    pending directory operation, per pending size change, and per sector
    written since its file's last fsync."""

    def __init__(self, fs: MemFS, n: int):
        ops = fs.ops[:n]
        last_sync: dict[int, int] = {}
        last_dirsync: dict[str, int] = {}
        for k, op in enumerate(ops):
            if op[0] == "sync":
                last_sync[op[1]] = k
            elif op[0] == "dirsync":
                last_dirsync[op[1]] = k
        # Durable parts, and the pending ones as axes.
        self.names = dict(fs._base_names)
        self.pending_dir: list[tuple] = []
        for k, op in enumerate(ops):
            if op[0] in ("link", "rename", "unlink"):
                if k < last_dirsync.get(op[1], -1):
                    _apply_dir(self.names, op)
                else:
                    self.pending_dir.append(op)
        self.durable: dict[int, bytearray] = {ino: bytearray(b) for ino, b in fs._base_data.items()}
        pending_data: dict[int, list[tuple]] = {}
        for k, op in enumerate(ops):
            if op[0] in ("write", "size"):
                ino = op[1]
                img = self.durable.setdefault(ino, bytearray())
                if k < last_sync.get(ino, -1):
                    _apply_data(img, op)
                else:
                    pending_data.setdefault(ino, []).append(op)
            elif op[0] == "link":
                self.durable.setdefault(op[3], bytearray())
        # Per inode: size axes, and per sector the versions it may hold.
        self.sizes: list[tuple[int, int]] = []  # (ino, new size)
        self.sectors: list[tuple[int, int, list[bytes]]] = []  # (ino, sector, versions after each write)
        for ino, pend in pending_data.items():
            running = bytearray(self.durable[ino])
            versions: dict[int, list[bytes]] = {}
            for op in pend:
                _apply_data(running, op)
                if op[0] == "size":
                    self.sizes.append((ino, op[2]))
                    continue
                offset, data = op[2], op[3]
                for sector in range(offset // SECTOR, (offset + len(data) - 1) // SECTOR + 1):
                    snap = bytes(running[sector * SECTOR : (sector + 1) * SECTOR])
                    got = versions.setdefault(sector, [])
                    if not got or got[-1] != snap:
                        got.append(snap)
            for sector, got in sorted(versions.items()):
                self.sectors.append((ino, sector, got))
        self.axes = [2] * len(self.pending_dir) + [2] * len(self.sizes) + [1 + len(v) for _, _, v in self.sectors]

    @property
    def count(self) -> int:
        return math.prod(self.axes)

    def state(self, choice: tuple[int, ...]) -> dict[str, bytes]:
        d, z = len(self.pending_dir), len(self.sizes)
        names = dict(self.names)
        for op, keep in zip(self.pending_dir, choice[:d]):
            if keep:
                _apply_dir(names, op)
        images = {ino: bytearray(b) for ino, b in self.durable.items()}
        for (ino, size), keep in zip(self.sizes, choice[d : d + z]):
            if keep:
                _apply_data(images[ino], ("size", ino, size))
        for (ino, sector, versions), pick in zip(self.sectors, choice[d + z :]):
            if pick:
                img, snap, at = images[ino], versions[pick - 1], sector * SECTOR
                if len(img) < at:
                    img.extend(bytes(at - len(img)))
                img[at : at + len(snap)] = snap
        return {path: bytes(images[ino]) for path, ino in names.items()}

    def choices(self, limit: int, rng: random.Random) -> Iterator[tuple[int, ...]]:
        if self.count <= limit:
            yield from itertools.product(*(range(a) for a in self.axes))
            return
        low = tuple(0 for _ in self.axes)
        high = tuple(a - 1 for a in self.axes)
        seen = set()
        picks = [low, high]
        for k, a in enumerate(self.axes):
            picks.append(low[:k] + (a - 1,) + low[k + 1 :])
            picks.append(high[:k] + (0,) + high[k + 1 :])
        for p in picks:
            if len(seen) >= limit:
                return
            if p not in seen:
                seen.add(p)
                yield p
        for _ in range(limit * 4):
            if len(seen) >= limit:
                return
            p = tuple(rng.randrange(a) for a in self.axes)
            if p not in seen:
                seen.add(p)
                yield p

    def states(self, limit: int, rng: random.Random) -> Iterator[dict[str, bytes]]:
        seen = set()
        for choice in self.choices(limit, rng):
            state = self.state(choice)
            key = hash(tuple(sorted(state.items())))
            if key not in seen:
                seen.add(key)
                yield state


def _apply_dir(names: dict[str, int], op: tuple) -> None:
    kind = op[0]
    if kind == "link":
        names[op[2]] = op[3]
    elif kind == "rename":
        if op[2] in names:
            names[op[3]] = names.pop(op[2])
    elif kind == "unlink":
        names.pop(op[2], None)


def _apply_data(img: bytearray, op: tuple) -> None:
    if op[0] == "size":
        size = op[2]
        if len(img) > size:
            del img[size:]
        else:
            img.extend(bytes(size - len(img)))
    else:
        offset, data = op[2], op[3]
        if len(img) < offset:
            img.extend(bytes(offset - len(img)))
        img[offset : offset + len(data)] = data
