"""The per-sample losses of the learners: PPO's clipped surrogate and the k3 KL estimate (spiral.training.learner,
spiral.training.think_update, the tabular twin)."""

from __future__ import annotations

import torch


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    loss_norm: float = 4096.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-sample PPO-clip losses (B,) from token log-probs (B, T), old log-probs (B, T), advantages (B,)."""
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)  # (B, T)
    adv = advantages[:, None].to(logp.dtype)  # (B, 1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * adv
    token_loss = -torch.minimum(unclipped, clipped)  # (B, T)
    per_sample = (token_loss * mask).sum(-1) / loss_norm  # (B,)
    n = mask.sum().clamp(min=1)
    with torch.no_grad():
        stats = {
            "clip_frac": ((clipped < unclipped).to(mask.dtype) * mask).sum() / n,
            "ratio_mean": (ratio * mask).sum() / n,
            "ratio_max": (ratio * mask).max() if mask.any() else torch.tensor(1.0),
            "approx_kl": (((ratio - 1) - torch.log(ratio)) * mask).sum() / n,  # k3 estimate of KL(old || new)
        }
    return per_sample, stats


def kl_penalty(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, loss_norm: float
) -> torch.Tensor:
    """Per-sample k3 estimate of KL(policy || reference), summed over tokens and divided by loss_norm."""
    d = ref_logp - logp
    return ((torch.exp(d) - d - 1) * mask.to(logp.dtype)).sum(-1) / loss_norm
