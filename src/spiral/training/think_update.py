"""The learner's update for think-mode turns (spiral.generation.think): PPO-clip over the thought's tokens and
the move, one advantage per turn.

Per turn with thought tokens x_1..x_n and move m (legal moves L):
  log pi(turn) = sum_j log P(x_j | prompt, x_<j) + log P(m | L, prompt + thought)
PPO's clipped surrogate is taken per token for the thought and for the move (the move is one "token" scored
over the legal moves, as in constrained mode). The move's term has weight 1 (as constrained mode's, loss_norm 1);
the thought's token terms are summed and divided by `learner.loss_norm` (Dr. GRPO's constant), so that a
48-token thought does not drown its move. The entropy bonus is exact over the legal moves after each thought.
The KL term (`learner.kl_coef`) is exact over the legal moves plus the k3 estimate on the sampled thought tokens:
that is what regularises the thoughts (toward the KL reference, the moving magnet in the presets); nothing else
does.

Each chunk of turns (about `micro_batch_tokens` tokens, a distinct prompt counted once) is one forward of its distinct prompts (shared prefixes
once) and one of its turns' thoughts and candidate trees on those prompts' caches (`score_thought_tokens`).
"""

from __future__ import annotations

import torch

from spiral.generation.think import score_thought_tokens, think_chunks
from spiral.training.losses import kl_penalty, ppo_clip_loss


def update_think(learner, turns: list, step: int) -> dict[str, float]:
    """`ppo_epochs` optimizer steps over think-mode turns; returns train/ metrics."""
    s, dev = learner.s, learner.device
    lr, entropy = learner._set_lr(step), learner.entropy_at(step)
    budget = s.micro_batch_tokens if s.micro_batch_tokens > 0 else 4096
    index = think_chunks([t.prompt_ids for t in turns], [len(t.response_ids) for t in turns], budget)
    chunks = [[turns[i] for i in c] for c in index]
    n = len(turns)
    use_ref = s.kl_coef > 0 and learner.ref_model is not None
    ref_cache: dict[int, tuple] = {}

    def score(model, chunk):
        prompts: dict[tuple, int] = {}
        rows = [prompts.setdefault(tuple(t.prompt_ids), len(prompts)) for t in chunk]
        thoughts = [list(t.response_ids[: t.thought_len]) for t in chunk]
        cands = [t.candidates for t in chunk]
        toks, scores = score_thought_tokens(model, [list(p) for p in prompts], rows, thoughts, cands,
                                            learner.temperature, learner.thought_temperature)  # fmt: skip
        return toks.float(), [torch.log_softmax(sc.float(), dim=-1) for sc in scores]

    def terms(i: int):
        chunk = chunks[i]
        toks, move_lp = score(learner.model, chunk)
        R, L = toks.shape
        mask = torch.zeros((R, L), device=dev)
        old = torch.zeros((R, L), device=dev)
        for r, t in enumerate(chunk):
            mask[r, : t.thought_len] = 1
            old[r, : t.thought_len] = torch.tensor(t.old_logprobs[: t.thought_len])
        adv = torch.tensor([t.advantage for t in chunk], device=dev)
        move = torch.stack([lp[t.choice] for lp, t in zip(move_lp, chunk, strict=True)])[:, None]
        old_move = torch.tensor([t.old_logprobs[-1] for t in chunk], device=dev)[:, None]
        th_loss, th_stats = ppo_clip_loss(toks, old, adv, mask, s.clip, s.loss_norm)
        mv_loss, mv_stats = ppo_clip_loss(move, old_move, adv, torch.ones_like(move), s.clip, 1.0)
        pg = (th_loss.sum() + mv_loss.sum()) / n
        ent = sum(-(lp.exp() * lp).sum() for lp in move_lp) / n  # exact over the legal moves
        loss = pg - entropy * ent
        parts = {"pg_loss": pg.item(), "entropy": ent.item() * n}
        if use_ref:
            if i not in ref_cache:
                with torch.no_grad(), torch.autocast(dev.type, enabled=False):
                    ref_cache[i] = score(learner.ref_model, chunk)
            ref_toks, ref_lp = ref_cache[i]
            kl_move = sum((lp.exp() * (lp - rl)).sum() for lp, rl in zip(move_lp, ref_lp, strict=True)) / n
            kl_thought = kl_penalty(toks, ref_toks, mask, s.loss_norm).sum() / n
            loss = loss + s.kl_coef * (kl_move + kl_thought)
            parts["kl"] = float((kl_move + kl_thought).detach())
        tokens = float(mask.sum()) + R
        stats = {
            k: (th_stats[k] * float(mask.sum()) + mv_stats[k] * R) / tokens
            for k in ("clip_frac", "ratio_mean", "approx_kl")
        }
        stats["ratio_max"] = torch.maximum(th_stats["ratio_max"], mv_stats["ratio_max"])
        return loss, parts, stats, float(R)  # weights per turn: train/entropy is per turn

    out = learner._epochs(len(chunks), terms, n, lr)
    out["train/distinct_prompts"] = float(len({tuple(t.prompt_ids) for t in turns}))
    return out
