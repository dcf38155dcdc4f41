"""What one backbone pass costs against one head step, per token: FLOPs, parameters and wall time.

The paper's speed-up (DTM 16x4 about 7x faster than FM 128) rests on a head that is cheap next to the backbone
(a 1.7B DiT against a 40M MLP head, a cost ratio of about 25 per token with 256 tokens). `pass_cost` measures
that ratio for a network: the backbone pass on n tokens against one head step (`FlowHead.step`, after the
once-per-transition condition) on the same n tokens, both per token.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

PAPER_RATIO = 20.0  # the regime of the paper's speed-up: a backbone pass costs >= 20 head steps per token


@dataclass
class PassCost:
    """One backbone pass and one head step over n tokens of `batch` samples, per token."""

    n_tokens: int
    batch: int
    backbone_flops: float  # per token (matrix products; 2 per multiply-add, attention included)
    head_flops: float  # per token, one head step
    backbone_params: int
    head_params: int  # all of the head's parameters
    backbone_seconds: float | None = (
        None  # per token, CPU time, fastest of the timed repeats (1 thread by default)
    )
    head_seconds: float | None = None

    @property
    def flop_ratio(self) -> float:
        return self.backbone_flops / self.head_flops

    @property
    def time_ratio(self) -> float | None:
        if self.backbone_seconds is None or self.head_seconds is None:
            return None
        return self.backbone_seconds / self.head_seconds

    @property
    def param_ratio(self) -> float:
        return self.backbone_params / self.head_params

    def as_dict(self) -> dict:
        return {**asdict(self), "flop_ratio": self.flop_ratio, "time_ratio": self.time_ratio,
                "param_ratio": self.param_ratio}  # fmt: skip

    def describe(self) -> str:
        """One line for the console."""
        timed = ""
        if self.time_ratio is not None:
            timed = (f", {self.time_ratio:.1f}x by CPU time ({1e6 * self.backbone_seconds:.1f} vs "
                     f"{1e6 * self.head_seconds:.2f} us per token, batch {self.batch}, "
                     f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''})")  # fmt: skip
        regime = (
            "the paper's regime"
            if self.flop_ratio >= PAPER_RATIO
            else f"below the paper's {PAPER_RATIO:.0f}x"
        )
        return (f"cost per token: backbone pass {self.backbone_flops / 1e6:.3g} MFLOP, head step "
                f"{self.head_flops / 1e6:.3g} MFLOP: {self.flop_ratio:.1f}x by FLOPs{timed}; parameters "
                f"{self.backbone_params / 1e6:.3g}M / {self.head_params / 1e6:.3g}M = {self.param_ratio:.1f}x "
                f"({regime})")  # fmt: skip


def count_flops(fn, model: nn.Module | None = None) -> int:
    """FLOPs of the matrix products fn() runs (torch's flop counter), plus the attention products of `model`'s
    Attention modules when the counter does not see them (scaled_dot_product_attention on CPU)."""
    from torch.utils.flop_counter import FlopCounterMode

    from transition_matching.nn.backbone import Attention

    attn = [0]

    def hook(mod, args, out):  # QK^T and AV: 2 x B x Lq x Lk x C multiply-adds
        q_len, k_len = args[0].shape[1], args[0].shape[1] + (args[2].length if args[2] is not None else 0)
        attn[0] += 4 * args[0].shape[0] * q_len * k_len * args[0].shape[2]

    mods = [m for m in model.modules() if isinstance(m, Attention)] if model is not None else []
    hooks = [m.register_forward_hook(hook) for m in mods]
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        for h in hooks:
            h.remove()
    counted = counter.get_flop_counts().get("Global", {})
    sdpa_seen = any("scaled_dot_product" in str(op) for op in counted)
    return counter.get_total_flops() + (0 if sdpa_seen else attn[0])


def fastest(fns: list, repeats: int, clock=time.process_time) -> list[float]:
    """The fastest of `repeats` interleaved timings of each function (after one warm-up call each). The clock is
    this process's CPU time by default: on a machine that other jobs keep busy, wall time counts the time the
    process waits for a core, CPU time only the work (one torch thread: one core)."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = clock()
            fn()
            best[i] = min(best[i], clock() - t0)
    return best


def _inputs(
    n_tokens: int, token_dim: int, num_classes: int, batch: int
) -> tuple[Tensor, Tensor, Tensor | None]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, n_tokens, token_dim, generator=g)
    t = torch.rand(batch, 1, generator=g).expand(batch, n_tokens)
    labels = torch.arange(batch) % num_classes if num_classes else None
    return x, t, labels


@torch.no_grad()
def pass_cost(
    backbone: nn.Module,
    head: nn.Module,
    n_tokens: int,
    token_dim: int,
    num_classes: int = 0,
    batch: int = 256,
    repeats: int = 5,
) -> PassCost:
    """The cost of one backbone pass over n tokens and of one head step on those n tokens, per token; timed
    (interleaved, fastest of `repeats`) unless repeats is 0."""
    x, t, labels = _inputs(n_tokens, token_dim, num_classes, batch)
    h = backbone(x, t, labels).reshape(batch * n_tokens, -1)
    rows = batch * n_tokens
    t_rows = t.reshape(-1) if getattr(head, "t_embed", None) is not None else None
    cond = head.condition(h, t_rows)
    Y, s = torch.randn(rows, token_dim, generator=torch.Generator().manual_seed(1)), torch.full((1,), 0.5)

    def run_backbone():
        return backbone(x, t, labels)

    def run_head():
        return head.step(cond, Y, s)

    out = PassCost(
        n_tokens=n_tokens, batch=batch,
        backbone_flops=count_flops(run_backbone, backbone) / rows, head_flops=count_flops(run_head) / rows,
        backbone_params=sum(p.numel() for p in backbone.parameters()),
        head_params=sum(p.numel() for p in head.parameters()),
    )  # fmt: skip
    if repeats > 0:
        bb, hd = fastest([run_backbone, run_head], repeats)
        out.backbone_seconds, out.head_seconds = bb / rows, hd / rows
    return out


def config_pass_cost(cfg, data, rows: int = 1024, repeats: int = 5) -> PassCost:
    """pass_cost of the network a resolved TrainConfig builds on `data` (a Dataset), timed on about `rows` tokens
    (ceil(rows / n) samples: 1,000-odd samples of one token, as the study samples 2D data). FM has no head: it
    is measured against the head a DTM of the same config would have, the head it is compared with."""
    import dataclasses

    from transition_matching.model import build

    torch.manual_seed(0)
    probe = cfg if cfg.method != "fm" else dataclasses.replace(cfg, method="dtm")
    _, model = build(probe, data.n_tokens, data.token_dim, data.num_classes)
    model.eval()
    batch = -(-rows // data.n_tokens)
    return pass_cost(
        model.backbone, model.head, data.n_tokens, data.token_dim, data.num_classes, batch, repeats
    )
