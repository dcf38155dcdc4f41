"""Build the method and the network (backbone + head or readout) that a TrainConfig describes."""

from __future__ import annotations

from torch import nn

from transition_matching.config import TrainConfig
from transition_matching.methods import MethodConfig, TMModel, build_method
from transition_matching.nn.backbone import MLPBackbone, TransformerBackbone
from transition_matching.nn.head import FlowHead
from transition_matching.processes import parse_schedule


def method_config(cfg: TrainConfig) -> MethodConfig:
    """The method settings of a training config."""
    schedule = None if cfg.schedule == "uniform" else parse_schedule(cfg.schedule, cfg.T)
    T = len(schedule) - 1 if schedule else cfg.T
    return MethodConfig(cfg.method, T, schedule, cfg.dtm_time, cfg.head_draws, cfg.p_uncond, cfg.time_dist,
                        cfg.head_time_dist)  # fmt: skip


def build(cfg: TrainConfig, n_tokens: int, token_dim: int, num_classes: int):
    """(method, TMModel) for a resolved config and data of n tokens of size token_dim."""
    method = build_method(method_config(cfg))
    if cfg.backbone == "mlp":
        backbone = MLPBackbone(token_dim, cfg.width, cfg.depth, num_classes)
    else:
        seq = method.seq_len(n_tokens)
        backbone = TransformerBackbone(token_dim, cfg.width, cfg.depth, cfg.heads, seq, num_classes)
    head = readout = None
    if method.uses_head:
        head = FlowHead(token_dim, cfg.width, cfg.head_width, cfg.head_depth, method.head_uses_t)
    else:
        readout = nn.Linear(cfg.width, token_dim)
    return method, TMModel(backbone, head, readout, num_classes)


def default_steps(cfg: TrainConfig) -> int:
    """Sampling steps when none are given: the trained T for ARTM/FHTM, 16 for DTM, 32 for FM."""
    if cfg.sample_steps:
        return cfg.sample_steps
    if cfg.method in ("artm", "fhtm"):
        return method_config(cfg).T
    return 16 if cfg.method == "dtm" else 32
