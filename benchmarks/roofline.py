"""Hardware probes for a decode roofline: measured GEMM FLOP/s and memory bandwidth on this machine.

roofline(B) = min(B * bandwidth / weight_bytes, peak_flops / (2 * parameters)) tokens/s: at small batch a decode
step streams every weight once (bandwidth bound); at large batch it is bound by matmul throughput.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Probe:
    """Measured peak numbers."""

    gemm_flops: float  # FLOP/s of a large square matmul in `dtype`
    bandwidth: float  # bytes/s of a large tensor copy (read + write counted)
    dtype: str


def _best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_probe(dtype: torch.dtype = torch.bfloat16, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n x n matmul (best of `repeats`)."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / _best_of(lambda: torch.mm(a, b), repeats)


def bandwidth_probe(nbytes: int = 512 * 2**20, repeats: int = 5) -> float:
    """Bytes/s moved by copying a tensor far larger than the caches (read + write)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    return 2 * nbytes / _best_of(lambda: dst.copy_(src), repeats)


def probe(dtype: torch.dtype = torch.bfloat16) -> Probe:
    """Run both probes."""
    return Probe(
        gemm_flops=gemm_probe(dtype), bandwidth=bandwidth_probe(), dtype=str(dtype).replace("torch.", "")
    )


def roofline_tokens_per_s(batch: int, params: int, weight_bytes: int, p: Probe) -> float:
    """Upper bound on decode tokens/s at batch size `batch`."""
    return min(batch * p.bandwidth / weight_bytes, p.gemm_flops / (2 * params))


if __name__ == "__main__":
    from spiral.model import cpu_has_fast_bf16

    # Without native bf16 a 2048^3 bf16 matmul takes minutes (it is emulated); generation then runs in fp32.
    for dt in (torch.float32, torch.bfloat16) if cpu_has_fast_bf16() else (torch.float32,):
        pr = probe(dt)
        print(f"{pr.dtype}: GEMM {pr.gemm_flops / 1e9:.0f} GFLOP/s, copy {pr.bandwidth / 1e9:.1f} GB/s")
