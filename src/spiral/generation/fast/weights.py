"""The fast engine's weights: the policy's (LoRA-merged) weights fused and packed for the matmuls that run them.

Per decoder layer the q/k/v projections are one matrix, and so are gate and up. bf16 weights are packed once per
weight update: for the native bf16 matmul (`spiral.generation.native`, AVX512-BF16: it prefetches the weights it
reads next, which a decode step streams from memory) or else for oneDNN where that gives F.linear's results.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spiral.generation.native import PackedLinear, gemm_wanted
from spiral.model import is_peft, merged_state_dict

SUPPORTED = ("llama",)


def can_prepack(dtype: torch.dtype) -> bool:
    """Whether weights of `dtype` can be prepacked for oneDNN with results equal to `F.linear` (bf16 on CPU).

    A prepacked weight skips the reorder oneDNN otherwise does on every call: measured here (2 threads, AVX512-BF16)
    1.2x (M = 64) to 2.7x (M = 8) faster bf16 matmuls for SmolLM2's shapes, bit for bit the same results. fp32
    is left to MKL, whose results the Hugging Face forward reproduces exactly.
    """
    if dtype != torch.bfloat16 or not torch.backends.mkldnn.is_available():
        return False
    try:
        w, x = torch.randn(48, 32, dtype=dtype), torch.randn(5, 32, dtype=dtype)
        return torch.equal(linear(x, pack_linear(w)), F.linear(x, w))
    except (RuntimeError, AttributeError):  # a build without these oneDNN ops
        return False


def pack_linear(w: torch.Tensor) -> torch.Tensor:
    """`w` (out, in) reordered into oneDNN's blocked layout (an opaque mkldnn tensor for `linear`)."""
    return torch.ops.mkldnn._reorder_linear_weight(w, 64)


def linear(x: torch.Tensor, w: torch.Tensor | PackedLinear) -> torch.Tensor:
    """x @ w.T for a plain weight, one prepacked for oneDNN (`pack_linear`) or for the native bf16 matmul."""
    if isinstance(w, PackedLinear):
        return w.kernels.linear(x, w)
    if w.is_mkldnn:
        return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
    return F.linear(x, w)


@dataclass
class Layer:
    """One decoder layer's packed weights (rows of W are output features, as in nn.Linear)."""

    attn_norm: torch.Tensor  # (C,)
    wqkv: torch.Tensor | PackedLinear  # ((H + 2 Hkv) D, C)
    wo: torch.Tensor | PackedLinear  # (C, H D)
    mlp_norm: torch.Tensor  # (C,)
    wgu: torch.Tensor | PackedLinear  # (2 F, C)
    wdown: torch.Tensor | PackedLinear  # (C, F)


def llama_config(policy: nn.Module):
    """(base model, config) of a bias-free SiLU Llama; ValueError for any other architecture."""
    base = policy.get_base_model() if is_peft(policy) else policy
    cfg = base.config
    if (
        cfg.model_type not in SUPPORTED
        or getattr(cfg, "attention_bias", False)
        or getattr(cfg, "mlp_bias", False)
    ):
        raise ValueError(
            f"FastGenerator supports bias-free Llama models, not {cfg.model_type!r}; use HFGenerator instead"
        )
    if getattr(cfg, "hidden_act", "silu") != "silu":
        raise ValueError(f"FastGenerator needs hidden_act=silu, got {cfg.hidden_act!r}; use HFGenerator")
    return base, cfg


class Weights:
    """The engine's own copy of the weights in `dtype`: `layers`, `embed`, `norm`, `lm_head`.

    `prepack` None packs where a packed matmul exists; `native_gemm` None uses the native bf16 matmul where it is
    built and wanted (`spiral.generation.native.gemm_wanted`), False keeps oneDNN's beside the native attention
    (for comparisons), True uses it wherever it is built.
    """

    def __init__(self, dtype: torch.dtype, kernels, prepack: bool | None, native_gemm: bool | None) -> None:
        self.dtype, self.kernels = dtype, kernels
        native_gemm = (
            native_gemm is not False
            and kernels is not None
            and kernels.has_gemm
            and dtype == torch.bfloat16
            and (native_gemm or gemm_wanted())
        )
        self.prepack = (native_gemm or can_prepack(dtype)) if prepack is None else prepack
        self.native_gemm = native_gemm and self.prepack
        self.layers: list[Layer] = []

    def load(self, policy: nn.Module) -> None:
        """Pack the policy's current (LoRA-merged) weights into fused `dtype` tensors."""
        sd = merged_state_dict(policy)
        dt = self.dtype

        def w(
            key: str, copy: bool = True
        ) -> torch.Tensor:  # own copies: the learner updates its tensors in place
            return sd[key].detach().to(dt, copy=copy).contiguous()

        onednn = self.prepack and can_prepack(dt)  # for weights the native matmul declines (or all)

        def pack(t: torch.Tensor) -> torch.Tensor | PackedLinear:
            packed = self.kernels.pack(t) if self.native_gemm else None
            if packed is not None:
                return packed
            return pack_linear(t) if onednn else t

        layers = []
        i = 0
        while f"model.layers.{i}.self_attn.q_proj.weight" in sd:
            p = f"model.layers.{i}."
            layers.append(
                Layer(
                    attn_norm=w(p + "input_layernorm.weight"),
                    wqkv=pack(torch.cat([w(p + f"self_attn.{n}_proj.weight", False) for n in "qkv"])),
                    wo=pack(w(p + "self_attn.o_proj.weight")),
                    mlp_norm=w(p + "post_attention_layernorm.weight"),
                    wgu=pack(
                        torch.cat([w(p + "mlp.gate_proj.weight", False), w(p + "mlp.up_proj.weight", False)])
                    ),
                    wdown=pack(w(p + "mlp.down_proj.weight")),
                )
            )
            i += 1
        self.layers = layers
        self.embed = w("model.embed_tokens.weight")  # (V, C)
        self.norm = w("model.norm.weight")
        tied = (
            "lm_head.weight" not in sd
            or sd["lm_head.weight"].data_ptr() == sd["model.embed_tokens.weight"].data_ptr()
        )
        self.lm_head = pack(self.embed if tied else w("lm_head.weight"))
