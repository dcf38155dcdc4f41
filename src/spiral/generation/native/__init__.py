"""Fused native kernels for the fast engine's decode step, compiled on first use and loaded with ctypes.

Attention (RoPE, cache writes, softmax attention over a shared prefix and each row's own slots), residual add +
RMSNorm, SiLU * up, the sampler, and (built with AVX512-BF16) a bf16 matmul over weights packed once per weight
update (`Kernels.pack`, `PackedLinear`; the engine uses it where `gemm_wanted()`).

`load()` compiles `decode.cpp` with the system C++ compiler (`$CXX`, else c++ / g++ / clang++) for this
machine's CPU (-march=native) into a cache folder (`$SPIRAL_NATIVE_CACHE`, else ~/.cache/spiral/native), keyed
by the source, the flags, the compiler's version and the CPU's feature flags, so a cache shared between machines
never hands one a binary built for another. The build writes to a temporary file and renames it (atomic); it
takes about 20 s once per machine. The build records the library's SHA-256 beside it (`.so.sha256`); a cached
library is loaded only when that hash matches and the file, its record and its folder belong to this user and
no one else can write to them (a library's constructor runs as soon as it is loaded, before any check of its
own). A damaged, replaced or stale library is rebuilt with one line on stderr; a cache folder others can write
to keeps the kernels off. Without a compiler `load()` returns None and the engine keeps its torch decode step
(the same computation: fp32 log-probs agree within 1e-4; slower); `SPIRAL_NATIVE=0` turns the kernels off.

The library links libgomp.so.1 (OpenMP), which the dynamic loader resolves to the copy torch has already
loaded: the kernels share torch's thread pool and its thread count (`torch.set_num_threads`).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("decode.cpp")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=fast", "-std=c++17", "-shared", "-fPIC"]
ABI = 10
DTYPES = {torch.float32: 0, torch.bfloat16: 1}
HEAD_DIMS = (16, 32, 64, 128)  # the attention instances decode.cpp compiles (attend_any, attend_d)
GROUPS = (1, 2, 3, 4, 6, 8)  # query heads per KV head

_lib: Kernels | None = None
_tried = False
error: str | None = None  # why the kernels are unavailable (after a failed load)
_opened: set[str] = set()  # library paths this process has handed to the dynamic loader


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    root = os.environ.get("SPIRAL_NATIVE_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "spiral" / "native"


def _uid() -> int:
    return os.geteuid()


def _private_folder(folder: Path) -> None:
    """Create `folder` (mode 700) if needed; RuntimeError unless only this user (or root, above it) can change it."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = folder.resolve()
    fix = f"; set SPIRAL_NATIVE_CACHE to a folder only you can write to (or chmod go-w {folder})"
    st = folder.stat()
    if st.st_uid != _uid():
        raise RuntimeError(f"the kernel cache {folder} belongs to uid {st.st_uid}, not to you{fix}")
    if st.st_mode & 0o022:
        raise RuntimeError(
            f"the kernel cache {folder} is writable by others (mode {st.st_mode & 0o777:o}){fix}"
        )
    for parent in folder.parents:  # others must not be able to swap the folder for their own
        st = parent.stat()
        shared = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
        if st.st_uid not in (0, _uid()) or shared:
            raise RuntimeError(f"the kernel cache {folder} is inside {parent}, which others can change{fix}")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record(library: Path) -> Path:
    """The file holding the SHA-256 the build recorded for `library`."""
    return library.with_name(library.name + ".sha256")


def _untrusted(library: Path) -> str | None:
    """Why the cached `library` must not be loaded (missing, not this user's, writable by others, not the file
    that was built), or None when it may be."""
    if not library.exists() and not library.is_symlink():
        return "missing"
    for path in (library, _record(library)):
        try:
            st = path.lstat()
        except OSError:
            return f"{library} has no recorded hash"
        if not stat.S_ISREG(st.st_mode):
            return f"{path} is not a regular file"
        if st.st_uid != _uid():
            return f"{path} belongs to uid {st.st_uid}"
        if st.st_mode & 0o022:
            return f"{path} is writable by others"
    if _digest(library.read_bytes()).encode() != _record(library).read_bytes().strip():
        return f"{library} does not match the hash recorded when it was built (damaged or replaced)"
    return None


def library_path(cxx: str, flags: list[str]) -> Path:
    """Where the cache keeps the kernels built by `cxx` with `flags` on this machine."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), " ".join(flags), version, _cpu_flags(), sys.platform]).encode()
    ).hexdigest()[:16]
    return _cache_dir() / f"spiral_decode_{key}.so"


def build(cxx: str, extra: list[str] | None = None, stale: str | None = None) -> Path:
    """Compile the kernels (or find them, verified, in the cache); the path of the shared library.

    `extra` compiler flags come after the defaults (default: `$SPIRAL_NATIVE_FLAGS`, split on spaces), e.g.
    `-mno-avx512bf16` for the portable bf16 code path or `-march=x86-64-v3` for a binary older CPUs can run.
    `stale`: why the cached library, though verified, cannot be used (it is rebuilt).
    """
    flags = FLAGS + (os.environ.get("SPIRAL_NATIVE_FLAGS", "").split() if extra is None else list(extra))
    out = library_path(cxx, flags)
    _private_folder(out.parent)
    problem = stale or _untrusted(out)
    if problem is None:
        return out
    if problem == "missing":
        line = f"compiling the native decode kernels into {out} (once per machine)"
    else:
        line = f"{problem}; compiling the native decode kernels again"
    print(f"spiral: {line}", file=sys.stderr, flush=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [cxx, *flags, str(SOURCE), "-o", tmp], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{cxx} failed: {proc.stderr.strip()[-2000:]}")
        os.chmod(tmp, 0o755)
        _write_atomic(_record(out), _digest(Path(tmp).read_bytes()) + "\n")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename (mode 644)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _open(path: Path) -> Kernels:
    """Kernels from `path`. A path this process loaded before goes through a fresh copy: the dynamic loader
    hands back the library it already holds under that name, so a rebuilt file would not be seen."""
    if str(path) not in _opened:
        _opened.add(str(path))
        return Kernels(path)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".so", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(path.read_bytes())
        return Kernels(Path(tmp))
    finally:
        os.unlink(tmp)


def gemm_wanted() -> bool:
    """Whether the engine should use the native bf16 matmul where it is built (`Kernels.has_gemm`): not on CPUs
    with AMX, whose tile instructions oneDNN uses for several times the FLOP/s of AVX512-BF16 dot products (not
    measured here: these machines have no AMX), and not with `SPIRAL_NATIVE_GEMM=0`."""
    if os.environ.get("SPIRAL_NATIVE_GEMM") == "0":
        return False
    return "amx_bf16" not in _cpu_flags().split()


@dataclass(frozen=True)
class PackedLinear:
    """A bf16 linear weight (out, in) in the packed layout of decode.cpp's gemm_bf16, with the kernels that packed
    it (they compute with it: `linear` in spiral.generation.fast.weights dispatches on this type)."""

    data: torch.Tensor  # flat bf16: blocks of 16 output features (zero-padded), each (in / 2, 16, 2)
    out_features: int
    in_features: int
    kernels: Kernels


class Kernels:
    """ctypes bindings of decode.cpp (raw pointers of contiguous tensors)."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        try:
            self._bind(lib, path)
        except AttributeError as e:  # a symbol is missing: ctypes names it
            raise RuntimeError(f"{path} lacks a kernel ({e})") from None
        self.lib = lib
        # the packed bf16 matmul (decode.cpp gemm_bf16) is built only with AVX512-BF16; see also gemm_wanted()
        self.has_gemm = bool(lib.spiral_has_gemm())

    @staticmethod
    def _bind(lib: ctypes.CDLL, path: Path) -> None:
        """Check the ABI version and declare every entry point's signature."""
        if lib.spiral_abi_version() != ABI:
            raise RuntimeError(f"{path} has ABI {lib.spiral_abi_version()}, expected {ABI}")
        P, I, F = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
        lib.spiral_attend.argtypes = [I] + [P] * 16 + [I] * 7 + [F]  # see spiral_attend in decode.cpp
        lib.spiral_attend.restype = ctypes.c_int
        lib.spiral_add_rms.argtypes = [I, P, P, P, P, I, I, F]
        lib.spiral_add_rms.restype = None
        lib.spiral_silu_mul.argtypes = [I, P, P, I, I]
        lib.spiral_silu_mul.restype = None
        lib.spiral_sample.argtypes = [I, P, P, I, I, F, P, P]
        lib.spiral_sample.restype = None
        lib.spiral_has_gemm.argtypes = []
        lib.spiral_has_gemm.restype = I
        lib.spiral_pack_bf16.argtypes = [P, P, I, I]
        lib.spiral_pack_bf16.restype = None
        lib.spiral_gemm_bf16.argtypes = [P, P, P, I, I, I]
        lib.spiral_gemm_bf16.restype = I

    def pack(self, w: torch.Tensor) -> PackedLinear | None:
        """`w` (out, in) bf16 packed for `linear`; None where the packed matmul does not apply (no AVX512-BF16
        in this build, another dtype, or an odd number of input features)."""
        if not self.has_gemm or w.dtype != torch.bfloat16 or w.dim() != 2 or w.shape[1] % 2:
            return None
        n, k = w.shape
        w = w.contiguous()
        data = torch.empty((n + 15) // 16 * 16 * k, dtype=torch.bfloat16)
        self.lib.spiral_pack_bf16(w.data_ptr(), data.data_ptr(), n, k)
        return PackedLinear(data, n, k, self)

    def linear(self, x: torch.Tensor, w: PackedLinear) -> torch.Tensor:
        """x @ w.T for x (.., in) bf16 and a weight packed by `pack`; (.., out) bf16."""
        if x.dtype != torch.bfloat16 or x.shape[-1] != w.in_features:
            raise ValueError(
                f"packed linear needs bf16 (.., {w.in_features}) input, got {x.dtype} {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        x = x.reshape(-1, w.in_features).contiguous()
        out = torch.empty((x.shape[0], w.out_features), dtype=torch.bfloat16)
        if len(x) and self.lib.spiral_gemm_bf16(
            x.data_ptr(), w.data.data_ptr(), out.data_ptr(), len(x), w.out_features, w.in_features
        ):
            raise ValueError(f"packed linear unsupported for {w.in_features} input features in this build")
        return out.view(*lead, w.out_features)

    @staticmethod
    def cache_shapes(dtype: torch.dtype, lead: tuple[int, ...], slots: int, head_dim: int):
        """Shapes of the key and value tensors `attend` reads, for leading dims `lead` (layers, rows, KV heads).

        fp32: keys (.., D, slots), values (.., slots, D). bf16: keys in blocks of 16 slots (.., slots/16, D/2,
        16, 2), values (.., slots/2, D, 2) (pairs for the dot-product instructions; see decode.cpp). No
        initialisation needed: the kernel masks unwritten key slots and zeroes the unwritten partner of each bf16
        value slot it writes.
        """
        if dtype == torch.bfloat16:
            return (*lead, slots // 16, head_dim // 2, 16, 2), (*lead, slots // 2, head_dim, 2)
        return (*lead, head_dim, slots), (*lead, slots, head_dim)

    def attend(self, qkv, pos, cos, sin, ck, cv, valid, group, pk, pv, prefix_slots, pstart, out, heads, kv_heads,
               s, scale, layer=0, slots=None, row_start=None, rowmap=None, own_start=None) -> None:  # fmt: skip
        """RoPE, cache writes and attention for the new tokens of every batch row (see decode.cpp `attend`).

        A decode step: qkv (B, (H + 2 Hkv) D), one token per row at slot `s`. Prefill: qkv (N, ...) for the
        real tokens in row-major slot order, `slots` (N,) int32 their slots, `row_start` (B + 1,) int64 where
        each row's tokens start. pos (N,) int64 RoPE positions; group (B,) int64 prefix group of each batch row;
        rowmap (B,) int64 the cache row of each batch row (None: the same); own_start (R,) int32 the first own slot
        of each cache row that can hold a token (None: 0; the blocks before it are not read); cos/sin (P, D); ck/cv the own caches
        (layers, R, Hkv, ...) in `cache_shapes` layout, of which `layer` is used; valid (R, T) bool per cache
        row; pk/pv the prefix caches (layers, Gr, Hkv, ...) of `prefix_slots` slots each, or None; pstart (Gr,)
        int32 first real prefix slot of each group; out (N, H D). T and prefix_slots are multiples of 16.
        """
        B, D, T = group.shape[0], cos.shape[1], valid.shape[1]
        C = 0 if pk is None else prefix_slots
        want = self.cache_shapes(ck.dtype, tuple(ck.shape[1:3]), T, D)
        if (tuple(ck.shape[1:]), tuple(cv.shape[1:])) != want or not (
            ck[0].is_contiguous() and cv[0].is_contiguous()
        ):
            raise ValueError(
                f"attend needs per-layer contiguous caches of shapes {want}, got {ck.shape} / {cv.shape}"
            )
        if rowmap is None and valid.shape[0] != B:
            raise ValueError(f"{B} batch rows but {valid.shape[0]} cache rows and no rowmap")
        size = ck.element_size()
        if self.lib.spiral_attend(
            DTYPES[qkv.dtype], qkv.data_ptr(), pos.data_ptr(), None if slots is None else slots.data_ptr(),
            None if row_start is None else row_start.data_ptr(), None if rowmap is None else rowmap.data_ptr(),
            None if own_start is None else own_start.data_ptr(),
            cos.data_ptr(), sin.data_ptr(), ck.data_ptr() + layer * ck.stride(0) * size,
            cv.data_ptr() + layer * cv.stride(0) * size, valid.data_ptr(), group.data_ptr(),
            None if pk is None else pk.data_ptr() + layer * pk.stride(0) * size,
            None if pv is None else pv.data_ptr() + layer * pv.stride(0) * size,
            None if pstart is None else pstart.data_ptr(), out.data_ptr(), B, heads, kv_heads, D, T, C, s, scale,
        ):  # fmt: skip
            raise ValueError(
                f"attention kernel does not support {heads} heads, {kv_heads} KV heads, head_dim {D}"
            )

    @staticmethod
    def supports(heads: int, kv_heads: int, head_dim: int) -> bool:
        """Whether `attend` handles this attention shape (the instances decode.cpp compiles)."""
        return head_dim in HEAD_DIMS and heads % kv_heads == 0 and heads // kv_heads in GROUPS

    def add_rms(self, x, y, w, out, eps: float) -> None:
        """x += y (y may be None), out = w * rms_norm(x); x, y, out (B, C)."""
        self.lib.spiral_add_rms(
            DTYPES[x.dtype], x.data_ptr(), None if y is None else y.data_ptr(), w.data_ptr(), out.data_ptr(),
            x.shape[0], x.shape[1], eps,
        )  # fmt: skip

    def silu_mul(self, gu, out) -> None:
        """out = silu(gate) * up for gu = [gate | up] (B, 2F); out (B, F)."""
        self.lib.spiral_silu_mul(DTYPES[gu.dtype], gu.data_ptr(), out.data_ptr(), gu.shape[0], out.shape[1])

    def sample(self, logits, u, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids (B,) and log-probs (B,) drawn from softmax(logits / temperature) (B, V) by inverse CDF at the
        uniforms u (B,) float64: the id where the cumulative probability first exceeds u."""
        B, V = logits.shape
        ids, logp = torch.empty(B, dtype=torch.int64), torch.empty(B, dtype=torch.float32)
        self.lib.spiral_sample(
            DTYPES[logits.dtype], logits.data_ptr(), u.data_ptr(), B, V, 1.0 / temperature, ids.data_ptr(),
            logp.data_ptr(),
        )  # fmt: skip
        return ids, logp


def load() -> Kernels | None:
    """The compiled kernels, or None (no compiler, a failed build, or SPIRAL_NATIVE=0); `error` says why."""
    global _lib, _tried, error
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("SPIRAL_NATIVE", "1") == "0":
        error = "turned off by SPIRAL_NATIVE=0"
        return None
    cxx = _compiler()
    if cxx is None:
        error = "no C++ compiler found (set CXX)"
        return None
    try:
        path = build(cxx)
        try:
            _lib = _open(path)
        except (OSError, RuntimeError) as e:  # a stale or damaged file in the cache: rebuild it once
            _lib = _open(build(cxx, stale=(str(e).splitlines() or [type(e).__name__])[0]))
    except (OSError, RuntimeError) as e:
        error = str(e)
        _lib = None
        first = error.splitlines()[0] if error else "unknown error"
        print(
            f"spiral: native decode kernels unavailable, using the torch decode step ({first})",
            file=sys.stderr,
        )
    return _lib
