"""Cache key (what invalidates it and what does not) and the disk cache (layout, validation, locking)."""

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from deepgemm.jit import cache as cache_module
from deepgemm.jit.cache import DiskCache, HeaderDigests, build_uncached, cache_key

STUB = "// deepgemm JIT kernel: k\n#include <lib/a.cuh>\n#include <cuda_fp8.h>\n"


@pytest.fixture
def include_dir(tmp_path):
    """lib/a.cuh -> <lib/b.cuh> and "c.cuh" (next to it); b.cuh -> <lib/a.cuh> (a cycle) and a toolkit
    header; lib/unrelated.cuh is included by nothing."""
    root = tmp_path / "include"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "a.cuh").write_text('#include <lib/b.cuh>\n  #  include "c.cuh"\nint a;\n')
    (root / "lib" / "b.cuh").write_text("#include <lib/a.cuh>\n#include <cuda_bf16.h>\nint b;\n")
    (root / "lib" / "c.cuh").write_text("#pragma once\nint c;\n")
    (root / "lib" / "unrelated.cuh").write_text("int u;\n")
    return root


def key_of(include_dir, source=STUB, **overrides):
    fields = dict(compiler_identity="nvcc 13.0.88 (/usr/local/cuda/bin/nvcc)", flags=("-std=c++20", "-O3"),
                  arch="sm_90a", package_version="0.1.0")
    fields.update(overrides)
    # A fresh HeaderDigests each time: the process-wide one deliberately hashes each header only once.
    return cache_key(source=source, headers_digest=HeaderDigests().of_source(source, [include_dir]), **fields)


def test_key_is_stable(include_dir):
    assert key_of(include_dir) == key_of(include_dir)
    assert len(key_of(include_dir)) == 64


@pytest.mark.parametrize("header", ["a.cuh", "b.cuh", "c.cuh"])
def test_key_changes_when_a_reachable_header_changes(include_dir, header):
    before = key_of(include_dir)
    path = include_dir / "lib" / header
    path.write_text(path.read_text() + "// edited\n")
    assert key_of(include_dir) != before


def test_key_ignores_headers_the_stub_cannot_reach(include_dir):
    before = key_of(include_dir)
    (include_dir / "lib" / "unrelated.cuh").write_text("int changed;\n")
    (include_dir / "lib" / "new.cuh").write_text("int new_file;\n")
    assert key_of(include_dir) == before


def test_key_does_not_depend_on_where_the_include_dir_is(include_dir, tmp_path):
    before = key_of(include_dir)
    assert key_of(include_dir.rename(tmp_path / "elsewhere")) == before


@pytest.mark.parametrize("override", [
    {"flags": ("-std=c++17", "-O3")},
    {"flags": ("-std=c++20", "-O3", "-lineinfo")},
    {"compiler_identity": "nvcc 13.0.89 (/usr/local/cuda/bin/nvcc)"},
    {"compiler_identity": "nvrtc 13.5 (nvidia-cuda-nvrtc 13.5.37)"},
    {"arch": "sm_100a"},
    {"package_version": "0.1.1"},
    {"source": STUB + "// config: other\n"},
])
def test_key_changes_with_every_other_input(include_dir, override):
    assert key_of(include_dir, **override) != key_of(include_dir)


def test_flag_boundaries_matter(include_dir):
    assert key_of(include_dir, flags=("-a", "-b")) != key_of(include_dir, flags=("-a-b",))


def test_header_digests_are_memoised_per_instance(include_dir):
    digests = HeaderDigests()
    before = digests.of_source(STUB, [include_dir])
    (include_dir / "lib" / "c.cuh").write_text("int c2;\n")
    assert digests.of_source(STUB, [include_dir]) == before  # hashed once per process
    assert HeaderDigests().of_source(STUB, [include_dir]) != before


def stand_in_builder(calls):
    def build(directory: Path) -> dict:
        calls.append(directory)
        source = (directory / "kernel.cu").read_bytes()
        (directory / "kernel.cubin").write_bytes(b"\x7fELF cubin of " + source)
        return {"symbol": "_Z1kv"}
    return build


def test_build_publish_and_hit(tmp_path):
    cache, calls = DiskCache(tmp_path / "cache"), []
    key = "ab" * 32
    entry, built = cache.get_or_build("k", key, "source text", stand_in_builder(calls))
    assert built and len(calls) == 1
    assert entry.directory == tmp_path / "cache" / "k" / key[:32]
    assert sorted(p.name for p in entry.directory.iterdir()) == ["kernel.cu", "kernel.cubin", "meta.json"]
    meta = json.loads((entry.directory / "meta.json").read_text())
    assert meta["key"] == key and meta["symbol"] == "_Z1kv" and meta["cubin_size"] == len(entry.cubin)
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []

    again, built = cache.get_or_build("k", key, "source text", stand_in_builder(calls))
    assert not built and len(calls) == 1
    assert again.cubin == entry.cubin and again.meta == entry.meta


@pytest.mark.parametrize("damage", ["truncate_cubin", "flip_cubin_byte", "garbage_meta", "no_meta",
                                    "other_key"])
def test_damaged_entries_are_not_loaded_and_get_rebuilt(tmp_path, damage):
    cache, calls = DiskCache(tmp_path), []
    key = "cd" * 32
    entry, _ = cache.get_or_build("k", key, "src", stand_in_builder(calls))
    cubin, meta = entry.directory / "kernel.cubin", entry.directory / "meta.json"
    if damage == "truncate_cubin":
        cubin.write_bytes(cubin.read_bytes()[:-3])
    elif damage == "flip_cubin_byte":
        data = bytearray(cubin.read_bytes())
        data[5] ^= 1
        cubin.write_bytes(bytes(data))
    elif damage == "garbage_meta":
        meta.write_text("{not json")
    elif damage == "no_meta":
        meta.unlink()
    else:
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "key": "ef" * 32}))
    assert cache.lookup("k", key) is None
    rebuilt, built = cache.get_or_build("k", key, "src", stand_in_builder(calls))
    assert built and len(calls) == 2 and cache.lookup("k", key) is not None
    assert rebuilt.cubin == entry.cubin


def test_reserved_and_odd_kernel_names_are_refused(tmp_path):
    cache = DiskCache(tmp_path)
    for name in ("tmp", "locks", "a/b", "..", ""):
        with pytest.raises(ValueError, match="cache directory"):
            cache.entry_dir(name, "0" * 64)


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def failing(directory):
        raise RuntimeError("compiler exploded")

    cache = DiskCache(tmp_path)
    with pytest.raises(RuntimeError, match="exploded"):
        cache.get_or_build("k", "12" * 32, "src", failing)
    assert not (tmp_path / "k" / ("12" * 16)).exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_uncached_build_keeps_nothing_on_disk(tmp_path):
    calls = []
    entry = build_uncached("34" * 32, "src", stand_in_builder(calls))
    assert entry.directory is None and entry.cubin.startswith(b"\x7fELF") and len(calls) == 1
    assert not calls[0].exists()


# Each worker reports that it is ready, waits for the go signal, then builds the same key with a slow
# stand-in compiler that logs every compile with its start and end time.
WORKER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from deepgemm.jit.cache import DiskCache

    root, signals, index = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def build(directory):
        started = time.time()
        time.sleep(1.0)
        (directory / "kernel.cubin").write_bytes(b"\\x7fELF" + bytes(range(256)) * 64)
        with open(signals / "compiles.log", "a") as f:
            f.write(f"{started} {time.time()}\\n")
        return {"symbol": "_Z6kernelv"}

    (signals / f"ready-{index}").touch()
    while not (signals / "go").exists():
        time.sleep(0.001)
    asked = time.time()
    entry, built = DiskCache(root).get_or_build("kernel", "5a" * 32, "// stub\\n", build)
    print(json.dumps({"built": built, "asked": asked, "size": len(entry.cubin), "dir": str(entry.directory)}))
""")


def test_concurrent_processes_build_once(tmp_path):
    root, signals = tmp_path / "cache", tmp_path / "signals"
    signals.mkdir()
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(root), str(signals), str(i)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(8)]
    deadline = time.time() + 120
    while len(list(signals.glob("ready-*"))) < 8 and time.time() < deadline:
        time.sleep(0.01)
    (signals / "go").touch()
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 8, [err for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]

    compiles = (signals / "compiles.log").read_text().splitlines()
    assert len(compiles) == 1 and sum(result["built"] for result in results) == 1
    compile_end = float(compiles[0].split()[1])
    assert all(result["asked"] < compile_end for result in results), "the workers did not overlap"
    assert {result["dir"] for result in results} == {str(root / "kernel" / ("5a" * 16))}
    assert {result["size"] for result in results} == {4 + 256 * 64}
    assert [p.name for p in (root / "kernel").iterdir()] == ["5a" * 16]
    assert list((root / "tmp").iterdir()) == []


def test_stale_staging_directories_are_cleaned_up(tmp_path):
    cache = DiskCache(tmp_path)
    stale, fresh = tmp_path / "tmp" / "k-dead-build", tmp_path / "tmp" / "k-live-build"
    stale.mkdir(parents=True)
    fresh.mkdir()
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))
    cache.get_or_build("k", "78" * 32, "src", stand_in_builder([]))
    assert not stale.exists() and fresh.exists()


def test_stray_files_under_tmp_are_cleaned_up(tmp_path):
    cache = DiskCache(tmp_path)
    (tmp_path / "tmp").mkdir()
    stale_file, fresh_file = tmp_path / "tmp" / "stray.txt", tmp_path / "tmp" / "recent.txt"
    stale_file.write_text("x")
    fresh_file.write_text("y")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stale_file, (two_days_ago, two_days_ago))
    cache.get_or_build("k", "79" * 32, "src", stand_in_builder([]))
    assert not stale_file.exists() and fresh_file.exists()


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Each test sees the one-warning-per-cache rule from the start."""
    monkeypatch.setattr(cache_module, "_warned_roots", set())


def make_read_only(root: Path, monkeypatch) -> None:
    """Makes ``root`` read-only: by its mode where that binds (not as root), else as a read-only file
    system would (EROFS for every write under it)."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    if os.geteuid() != 0:
        return

    def refuse(path) -> None:
        if Path(path).resolve().is_relative_to(root.resolve()):
            raise OSError(errno.EROFS, "Read-only file system", str(path))

    real_mkdir, real_open = Path.mkdir, open

    def mkdir(self, *args, **kwargs):
        if not self.exists():
            refuse(self)
        return real_mkdir(self, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if mode != "r":
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(cache_module, "open", open_, raising=False)


def test_read_only_cache_is_read_and_misses_compile_in_memory(tmp_path, monkeypatch, fresh_warnings):
    root, calls = tmp_path / "shipped", []
    shipped, _ = DiskCache(root).get_or_build("k", "aa" * 32, "src", stand_in_builder(calls))
    make_read_only(root, monkeypatch)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            hit, built = DiskCache(root).get_or_build("k", "aa" * 32, "src", stand_in_builder(calls))
        assert not built and hit.cubin == shipped.cubin and len(calls) == 1
        with pytest.warns(RuntimeWarning) as record:
            for key in ("bb" * 32, "cc" * 32):
                entry, built = DiskCache(root).get_or_build("k", key, "src", stand_in_builder(calls))
                assert built and entry.directory is None and entry.cubin.startswith(b"\x7fELF")
        assert len(record) == 1 and len(calls) == 3
        message = str(record[0].message)
        assert str(root) in message and "DG_JIT_CACHE_DIR" in message and "DG_JIT_DISABLE_CACHE" in message
        assert sorted(p.name for p in (root / "k").iterdir()) == ["aa" * 16]
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755)


def test_cache_dir_that_is_a_file_compiles_in_memory(tmp_path, fresh_warnings):
    root = tmp_path / "not-a-directory"
    root.write_text("")
    with pytest.warns(RuntimeWarning, match="cannot write the JIT cache .*DG_JIT_CACHE_DIR"):
        entry, built = DiskCache(root).get_or_build("k", "dd" * 32, "src", stand_in_builder([]))
    assert built and entry.directory is None and DiskCache(root).lookup("k", "dd" * 32) is None


def test_a_build_error_is_not_taken_for_an_unwritable_cache(tmp_path, fresh_warnings):
    def failing(directory):
        raise OSError(errno.ENOENT, "nvcc not found")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(OSError, match="nvcc not found"):
            DiskCache(tmp_path).get_or_build("k", "ee" * 32, "src", failing)
