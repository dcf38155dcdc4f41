"""The native kernel cache loads only what this user built: owner, permissions and the recorded hash are checked
before the dynamic loader sees a file, and a stale or incomplete library is rebuilt or reported, never raised.

A stand-in compiler builds a small C library with the kernels' entry points (no real kernels): its ABI, a missing
entry point and a constructor that leaves a marker file (a planted library) are chosen by environment variables.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_native import fake_compiler, reset_native

from spiral.generation import native

STUB = r"""
#include <stdio.h>
#include <stdlib.h>
#ifndef ABI
#define ABI 10
#endif
#ifdef PLANTED
__attribute__((constructor)) static void planted(void) {
    const char *m = getenv("SPIRAL_TEST_MARKER");
    FILE *f = m ? fopen(m, "w") : NULL;
    if (f) { fputs("ran", f); fclose(f); }
}
#endif
int spiral_abi_version(void) { return ABI; }
int spiral_attend(void) { return 1; }
void spiral_add_rms(void) {}
void spiral_silu_mul(void) {}
void spiral_sample(void) {}
int spiral_has_gemm(void) { return 0; }
void spiral_pack_bf16(void) {}
#ifndef MISSING
int spiral_gemm_bf16(void) { return 1; }
#endif
"""


@pytest.fixture
def stub(monkeypatch, tmp_path) -> dict:
    """A stand-in compiler (CXX) and a fresh cache; returns the compiler, the cache and the library's path."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    reset_native(monkeypatch)
    for var in ("SPIRAL_NATIVE", "SPIRAL_NATIVE_FLAGS", "STUB_ABI", "STUB_CFLAGS"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "stub.c").write_text(STUB)
    body = f'{cc} -shared -fPIC -x c $STUB_CFLAGS -DABI=${{STUB_ABI:-10}} {tmp_path / "stub.c"} -o "$out"\n'
    cxx = fake_compiler(tmp_path, body)
    cache = tmp_path / "cache"
    marker = tmp_path / "planted-ran"
    monkeypatch.setenv("CXX", cxx)
    monkeypatch.setenv("SPIRAL_NATIVE_CACHE", str(cache))
    monkeypatch.setenv("SPIRAL_TEST_MARKER", str(marker))
    return {"cxx": cxx, "cache": cache, "marker": marker, "path": native.library_path(cxx, native.FLAGS)}


def _plant(stub: dict, record: bool) -> Path:
    """A library whose constructor leaves the marker, at the name the cache expects (with a matching hash record
    when `record`)."""
    path = stub["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "STUB_CFLAGS": "-DPLANTED"}
    subprocess.run([stub["cxx"], "-o", str(path)], check=True, env=env)
    if record:
        native._record(path).write_text(native._digest(path.read_bytes()) + "\n")
    return path


@pytest.mark.parametrize("how", ["no recorded hash", "another owner", "writable by others"])
def test_a_library_planted_in_the_cache_is_never_loaded(stub, capsys, how):
    path = _plant(stub, record=how != "no recorded hash")
    if how == "another owner":
        if os.geteuid() != 0:
            pytest.skip("chown needs root")
        os.chown(path, 65534, 65534)
    elif how == "writable by others":
        path.chmod(0o666)
    kernels = native.load()
    assert not stub["marker"].exists()  # its constructor never ran
    assert kernels is not None and not kernels.has_gemm  # rebuilt by the stand-in compiler, then loaded
    err = capsys.readouterr().err.strip().splitlines()
    expected = {"no recorded hash": "has no recorded hash", "another owner": "belongs to uid 65534"}
    assert (
        len(err) == 1
        and expected.get(how, how) in err[0]
        and "compiling the native decode kernels again" in err[0]
    )
    assert native._untrusted(path) is None


@pytest.mark.parametrize("mode", [0o777, 0o770])
def test_a_cache_folder_others_can_write_to_is_not_used(stub, mode):
    path = _plant(stub, record=True)
    path.parent.chmod(mode)
    assert native.load() is None
    assert "writable by others" in native.error and "SPIRAL_NATIVE_CACHE" in native.error
    assert not stub["marker"].exists()


def test_a_cache_folder_of_another_user_is_not_used(stub, monkeypatch):
    _plant(stub, record=True)
    monkeypatch.setattr(native, "_uid", lambda: os.geteuid() + 1)
    assert native.load() is None
    assert "not to you" in native.error and not stub["marker"].exists()


def test_a_truncated_library_is_rebuilt_with_one_line(stub):
    assert native.load() is not None
    path = stub["path"]
    data = path.read_bytes()
    # Damage it through a new file: truncating in place the library this process has mapped would kill this
    # process with SIGBUS when it exits (the loader runs the library's finalisers from the mapping).
    damaged = path.with_suffix(".damaged")
    damaged.write_bytes(data[: len(data) // 2])
    os.replace(damaged, path)
    # In a fresh process: loading a truncated library can kill the process with SIGBUS.
    code = "from spiral.generation import native; k = native.load(); print('loaded' if k else native.error)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "loaded"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not match the hash recorded when it was built" in lines[0]
    assert path.read_bytes() == data


def test_a_library_missing_an_entry_point_is_reported_not_raised(stub, monkeypatch):
    monkeypatch.setenv("STUB_CFLAGS", "-DMISSING")
    assert native.load() is None
    assert "lacks a kernel" in native.error and "spiral_gemm_bf16" in native.error


def test_a_stale_abi_is_rebuilt_and_the_new_library_is_used_in_the_same_process(stub, monkeypatch):
    monkeypatch.setenv("STUB_ABI", "9")
    assert native.load() is None and "has ABI 9, expected" in native.error
    reset_native(monkeypatch)
    monkeypatch.setenv("STUB_ABI", str(native.ABI))  # same compiler version and flags: the same cache name
    kernels = native.load()
    assert kernels is not None, native.error
    assert kernels.lib.spiral_abi_version() == native.ABI
