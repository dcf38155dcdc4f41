"""Frozen-weight bf16 matmuls: the learner's X·W and dY·Wᵀ against weights cast and packed once.

With LoRA every base weight is frozen, so each heavy matmul of a training step is a plain GEMM against a fixed
matrix: X·Wᵀ in the forward pass and dY·W in the backward pass for the activations; no weight gradient is ever
needed. `enable(model)` turns every frozen `nn.Linear` of a model (the LoRA base layers q/k/v/o/gate/up/down and
the output layer) into a `FrozenLinear`: the same module and parameters (state dicts, checkpoints and LoRA merges
see nothing new), whose forward casts the activations to bf16 and multiplies them with a bf16 copy of the weight
made once, in both layouts the two products want. oneDNN accumulates in fp32; the result comes back as fp32, so
the residual stream, norms, attention, LoRA factors, the losses and the optimiser stay fp32.

The copy is remade when the weight changes (its data pointer or version counter moves: a `load_state_dict`, a
merge, a magnet move on a full model), and a weight that requires grad (a full fine-tune) takes the plain fp32
path, as does everything while `set_enabled(False)` holds. Only CPUs that multiply bf16 natively (AMX or
AVX512-BF16) gain from it; `wanted("auto")` says whether to use it here (`model.frozen_bf16`).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

_state = {"on": True}


class _FrozenMatmul(torch.autograd.Function):
    """y = x·Wᵀ with W frozen: bf16 operands, fp32 accumulation, fp32 result; the gradient flows to x only."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
        # w: (N, K) bf16 for the backward product dY·W; wt: (K, N) bf16 for the forward product X·Wᵀ
        lead = x.shape[:-1]
        y = torch.mm(x.reshape(-1, x.shape[-1]).to(torch.bfloat16), wt)
        ctx.save_for_backward(w)
        ctx.x_dtype = x.dtype
        return y.to(x.dtype).reshape(*lead, wt.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (w,) = ctx.saved_tensors
        lead = grad.shape[:-1]
        gx = torch.mm(grad.reshape(-1, grad.shape[-1]).to(torch.bfloat16), w)
        return gx.to(ctx.x_dtype).reshape(*lead, w.shape[1]), None, None


class _LoraFrozenMatmul(torch.autograd.Function):
    """y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ with W frozen (bf16 operands) and the LoRA factors A (r, K), B (N, r) in fp32.

    The LoRA term is accumulated into the base product in place (`addmm_` with alpha = s), and the backward pass
    does the same for dX, so the scaled LoRA output and its sum with the base output never exist as tensors of
    their own: two passes over an (M, N) activation fewer each way than peft's `base(x) + B(A(x)) * s`."""

    @staticmethod
    def forward(ctx, x, a, b, w, wt, scale: float):
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        xa = x2 @ a.t()  # (M, r)
        y = torch.mm(x2.to(torch.bfloat16), wt).to(x.dtype)
        y.addmm_(xa, b.t(), alpha=scale)
        ctx.save_for_backward(x2, xa, a, b, w)
        ctx.scale = scale
        return y.reshape(*lead, wt.shape[1])

    @staticmethod
    def backward(ctx, grad):
        x2, xa, a, b, w = ctx.saved_tensors
        lead = grad.shape[:-1]
        g2 = grad.reshape(-1, grad.shape[-1])
        gxa = (g2 @ b).mul_(ctx.scale)  # (M, r)
        gb = (g2.t() @ xa).mul_(ctx.scale) if ctx.needs_input_grad[2] else None
        ga = gxa.t() @ x2 if ctx.needs_input_grad[1] else None
        gx = None
        if ctx.needs_input_grad[0]:
            gx = torch.mm(g2.to(torch.bfloat16), w).to(x2.dtype)
            gx.addmm_(gxa, a)
            gx = gx.reshape(*lead, w.shape[1])
        return gx, ga, gb, None, None, None


class FrozenLinear(nn.Linear):
    """An `nn.Linear` whose frozen weight multiplies in bf16 (copies made once); trainable weights stay fp32."""

    _packed: tuple | None = None

    def packed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, Wᵀ) in bf16, contiguous, remade when the weight's storage or version changes."""
        w = self.weight
        key = (w.data_ptr(), w._version, tuple(w.shape))
        if self._packed is None or self._packed[0] != key:
            with torch.no_grad():
                w16 = w.detach().to(torch.bfloat16).contiguous()
                self._packed = (key, w16, w16.t().contiguous())
        return self._packed[1], self._packed[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if not _state["on"] or w.requires_grad or w.device.type != "cpu" or x.dtype != torch.float32:
            return F.linear(x, w, self.bias)
        w16, wt16 = self.packed()
        y = _FrozenMatmul.apply(x, w16, wt16)
        return y + self.bias if self.bias is not None else y


def _lora_class():
    """`FrozenLoraLinear`, a subclass of peft's LoRA `Linear` made on first use (None without peft)."""
    if "lora" not in _classes:
        try:
            from peft.tuners.lora.layer import Linear as LoraLinear
        except ImportError:
            _classes["lora"] = None
            return None

        class FrozenLoraLinear(LoraLinear):
            """peft's LoRA `Linear`: one plain adapter (no dropout, DoRA or variant) over a frozen base layer
            runs as one fused bf16 + LoRA product; anything else runs peft's own forward."""

            def forward(self, x, *args, **kwargs):
                base = self.base_layer
                active = self.active_adapters
                name = active[0] if len(active) == 1 else None
                if (
                    not _state["on"] or args or kwargs or self.disable_adapters or self.merged
                    or name not in self.lora_A or name in getattr(self, "lora_variant", {})
                    or not isinstance(self.lora_dropout[name], nn.Identity)
                    or not isinstance(base, FrozenLinear) or base.weight.requires_grad or base.bias is not None
                    or x.dtype != torch.float32 or x.device.type != "cpu"
                    or self.lora_A[name].weight.dtype != torch.float32
                ):  # fmt: skip
                    return super().forward(x, *args, **kwargs)
                w16, wt16 = base.packed()
                a, b = self.lora_A[name].weight, self.lora_B[name].weight
                return _LoraFrozenMatmul.apply(x, a, b, w16, wt16, float(self.scaling[name]))

        _classes["lora"] = (LoraLinear, FrozenLoraLinear)
    return _classes["lora"]


_classes: dict = {}


def enable(model: nn.Module) -> int:
    """Make every frozen `nn.Linear` of `model` a `FrozenLinear` and every peft LoRA `Linear` a fused one (in
    place); returns how many frozen linear layers there are.

    Modules whose weight requires grad are converted too but keep the plain path until they are frozen."""
    lora = _lora_class()
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = FrozenLinear
        if lora is not None and type(module) is lora[0]:
            module.__class__ = lora[1]
    return count(model)


def disable(model: nn.Module) -> None:
    """Undo `enable`: plain `nn.Linear` modules again, packed copies dropped."""
    lora = _lora_class()
    for module in model.modules():
        if type(module) is FrozenLinear:
            module.__dict__.pop("_packed", None)
            module.__class__ = nn.Linear
        if lora is not None and type(module) is lora[1]:
            module.__class__ = lora[0]


def count(model: nn.Module) -> int:
    """How many frozen linear layers of `model` take the bf16 path."""
    return sum(isinstance(m, FrozenLinear) and not m.weight.requires_grad for m in model.modules())


@contextmanager
def set_enabled(on: bool):
    """Within the block, FrozenLinear layers take the bf16 path only if `on` (the fp32 path otherwise)."""
    before = _state["on"]
    _state["on"] = on
    try:
        yield
    finally:
        _state["on"] = before


def wanted(setting: str | bool) -> bool:
    """`model.frozen_bf16`: true / false as given; auto means on where the CPU multiplies bf16 natively."""
    if isinstance(setting, bool):
        return setting
    if setting.lower() in ("true", "on"):
        return True
    if setting.lower() in ("false", "off"):
        return False
    from spiral.model import cpu_has_fast_bf16

    return cpu_has_fast_bf16()
