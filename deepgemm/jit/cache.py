"""Content-addressed disk cache of compiled kernels (``docs/design.md``, "JIT, cache and launch").

Key: a SHA-256 over the stub, every header it can reach (by following ``#include`` lines, so editing a
header recompiles only the kernels that include it), the compiler's identity, version and flags, the arch
and the package version. An entry, ``<root>/<kernel>/<key[:32]>/{kernel.cu, kernel.cubin, meta.json}``, is
built under ``<root>/tmp/`` and published with one atomic directory rename. Builders of one key serialise
on ``fcntl.flock`` of ``<root>/locks/<key[:32]>.lock`` and re-check under it; readers never lock, so a
read-only cache (one shipped in a container image) is served as is, and a miss there compiles in memory.
An entry whose ``meta.json`` does not match its key and cubin (size, SHA-256) counts as absent (rebuilt).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepgemm.jit import knobs

_INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.MULTILINE)
_RESERVED_DIRS = ("tmp", "locks")
SOURCE_NAME = "kernel.cu"
CUBIN_NAME = "kernel.cubin"
META_NAME = "meta.json"


class HeaderDigests:
    """Digests of the header closures of include lines, memoised for the life of the object: with the
    process-wide ``HEADER_DIGESTS``, a header edited while a process runs is seen by the next process."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, str, tuple[Path, ...]], str] = {}

    def of_source(self, source: str, include_dirs: Sequence[Path]) -> str:
        """Digest of every header ``source`` can reach through ``include_dirs``."""
        dirs = tuple(include_dirs)
        digest = hashlib.sha256()
        for delimiter, name in _INCLUDE.findall(source):
            digest.update(f"{delimiter}{name}\0{self._of_include(delimiter, name, dirs)}\n".encode())
        return digest.hexdigest()

    def _of_include(self, delimiter: str, name: str, dirs: tuple[Path, ...]) -> str:
        memo_key = (delimiter, name, dirs)
        if memo_key not in self._memo:
            digest = hashlib.sha256()
            for spelling, text in _header_closure(delimiter, name, dirs):
                digest.update(f"{spelling}\0{len(text)}\0".encode())
                digest.update(text)
            self._memo[memo_key] = digest.hexdigest()
        return self._memo[memo_key]


def _header_closure(delimiter: str, name: str, dirs: tuple[Path, ...]) -> list[tuple[str, bytes]]:
    """(include spelling, contents) of the header and everything it includes, in visit order."""
    closure: list[tuple[str, bytes]] = []
    seen: set[Path] = set()
    pending: list[tuple[str, str, Path | None]] = [(delimiter, name, None)]
    while pending:
        delimiter, name, including_dir = pending.pop()
        # The compilers' rule: "..." looks next to the including file first, then both forms search -I dirs.
        # A header found nowhere (a toolkit or system header) is covered by the compiler's version instead.
        search = ((including_dir,) if delimiter == '"' and including_dir else ()) + dirs
        path = next((directory / name for directory in search if (directory / name).is_file()), None)
        if path is None or path.resolve() in seen:
            continue
        seen.add(path.resolve())
        text = path.read_bytes()
        # The include spelling, not the absolute path, goes into the digest, so a checkout or
        # virtual environment in another directory shares cache entries.
        closure.append((f"{delimiter}{name}", text))
        pending += [(d, n, path.parent) for d, n in reversed(_INCLUDE.findall(text.decode(errors="replace")))]
    return closure


HEADER_DIGESTS = HeaderDigests()


def cache_key(*, source: str, headers_digest: str, compiler_identity: str, flags: Sequence[str],
              arch: str, package_version: str) -> str:
    """Hex SHA-256 of everything that determines the cubin."""
    digest = hashlib.sha256()
    for field, value in (("source", source), ("headers", headers_digest), ("compiler", compiler_identity),
                         ("flags", "\0".join(flags)), ("arch", arch), ("version", package_version)):
        encoded = value.encode()
        digest.update(f"{field}:{len(encoded)}:".encode())
        digest.update(encoded)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """A build: the cubin, its metadata, and where it lives on disk (``None`` with the cache off)."""

    cubin: bytes
    meta: dict
    directory: Path | None


Builder = Callable[[Path], dict]
"""Compiles ``<dir>/kernel.cu`` into ``<dir>/kernel.cubin`` and returns extra metadata for meta.json."""


class DiskCache:
    """The cache rooted at ``root`` (``DG_JIT_CACHE_DIR`` by default)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entry_dir(self, kernel: str, key: str) -> Path:
        if kernel in _RESERVED_DIRS or not re.fullmatch(r"\w+", kernel):
            raise ValueError(f"kernel name {kernel!r} cannot name a cache directory")
        return self.root / kernel / key[:32]

    def lookup(self, kernel: str, key: str) -> CacheEntry | None:
        """The valid entry for ``key``, or ``None`` (absent, partial or corrupt)."""
        directory = self.entry_dir(kernel, key)
        try:
            meta = json.loads((directory / META_NAME).read_text())
            cubin = (directory / CUBIN_NAME).read_bytes()
        except (OSError, ValueError):
            return None
        if (meta.get("key") != key or meta.get("cubin_size") != len(cubin)
                or meta.get("cubin_sha256") != hashlib.sha256(cubin).hexdigest()):
            return None
        return CacheEntry(cubin, meta, directory)

    def get_or_build(self, kernel: str, key: str, source: str, build: Builder) -> tuple[CacheEntry, bool]:
        """The entry for ``key``, building and publishing it if needed; the flag says whether this call
        built it. Safe against any number of processes and threads doing the same at once. An unwritable
        cache is still read; a miss then compiles in memory, with one warning per process."""
        entry = self.lookup(kernel, key)
        if entry is not None:
            knobs.debug_log(f"disk cache hit {entry.directory}")
            return entry, False
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(self._lock(key))
                entry = self.lookup(kernel, key)
                staging = None if entry else self._staging(kernel, key)
            except OSError as error:
                _warn_unwritable(self.root, error)
                return build_uncached(key, source, build), True
            if entry is not None:
                knobs.debug_log(f"disk cache hit after waiting for another builder {entry.directory}")
                return entry, False
            knobs.debug_log(f"disk cache miss {self.entry_dir(kernel, key)}")
            stack.callback(shutil.rmtree, staging, ignore_errors=True)
            built = build_entry(staging, key, source, build)
            try:
                return self._publish(staging, self.entry_dir(kernel, key), built), True
            except OSError as error:
                _warn_unwritable(self.root, error)
                return CacheEntry(built.cubin, built.meta, None), True

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        lock_dir = self.root / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        # Lock files are never deleted: removing one while another process waits on it would let a
        # third process lock a new file of the same name and build concurrently.
        with open(lock_dir / f"{key[:32]}.lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file is closed, whatever happens
            yield

    def _staging(self, kernel: str, key: str) -> Path:
        (tmp_root := self.root / "tmp").mkdir(parents=True, exist_ok=True)
        _remove_stale(tmp_root)
        (staging := tmp_root / f"{kernel}-{key[:16]}-{uuid.uuid4().hex}").mkdir()
        return staging

    def _publish(self, staging: Path, final: Path, entry: CacheEntry) -> CacheEntry:
        for name in (SOURCE_NAME, CUBIN_NAME, META_NAME):
            _fsync(staging / name)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            # Only a corrupt entry can be here (lookup rejected it under the lock): move it aside
            # so the rename below can take its place.
            corrupt = self.root / "tmp" / f"corrupt-{uuid.uuid4().hex}"
            final.rename(corrupt)
            shutil.rmtree(corrupt, ignore_errors=True)
        staging.rename(final)
        _fsync(final.parent)
        knobs.debug_log(f"published {final}")
        return CacheEntry(entry.cubin, entry.meta, final)


_warned_roots: set[Path] = set()


def _warn_unwritable(root: Path, error: OSError) -> None:
    if root not in _warned_roots:
        _warned_roots.add(root)
        warnings.warn(f"deepgemm: cannot write the JIT cache {root} ({error.strerror or error}); kernels "
                      "it lacks are compiled in memory for this process only. Set DG_JIT_CACHE_DIR to a "
                      "writable directory, or DG_JIT_DISABLE_CACHE=1 to not use a disk cache.",
                      RuntimeWarning, stacklevel=5)


def build_entry(directory: Path, key: str, source: str, build: Builder) -> CacheEntry:
    """Write ``kernel.cu``, run ``build``, and write ``meta.json`` in ``directory`` (which must exist)."""
    (directory / SOURCE_NAME).write_text(source)
    extra = build(directory)
    cubin = (directory / CUBIN_NAME).read_bytes()
    meta = {"key": key, "cubin_size": len(cubin), "cubin_sha256": hashlib.sha256(cubin).hexdigest(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    (directory / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return CacheEntry(cubin, meta, directory)


def build_uncached(key: str, source: str, build: Builder) -> CacheEntry:
    """``DG_JIT_DISABLE_CACHE``: build in a temporary directory, keep the cubin in memory only."""
    with tempfile.TemporaryDirectory(prefix="deepgemm-jit-") as directory:
        entry = build_entry(Path(directory), key, source, build)
    return CacheEntry(entry.cubin, entry.meta, None)


def _remove_stale(tmp_root: Path, max_age_s: float = 24 * 3600) -> None:
    # Builds killed mid-compile leave their staging directories (or stray files) behind; a live build is
    # minutes old at most, so anything older than a day is litter.
    cutoff = time.time() - max_age_s
    for path in tmp_root.iterdir():
        with contextlib.suppress(OSError):
            if path.lstat().st_mtime < cutoff:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _fsync(path: Path) -> None:
    # Files are made durable before the rename and the rename after it, so a crash cannot leave a
    # published name pointing at unwritten data.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
