"""Scoring "think, then move" turns: the log-probability of a free-form thought and of each legal move after it.

A turn is (prompt, thought, legal moves). Its log-probability under the policy is

  log P(thought | prompt) + log P(move | legal, prompt + thought)

where the second term is constrained scoring (spiral.generation.actions) with the thought in the prefix. The
learner needs both parts for every turn, with gradients; `score_thoughts` computes them in two forward passes:
each distinct prompt once (shared prefixes once, as everywhere), then one row per turn holding its thought and
its legal moves' prefix tree (`candidate_trie`) on the prompt's cache. A causal mask covers the thought; each
tree node sees the prompt, the whole thought and its own ancestors. Logits are computed only in the second pass
and at the prompt's last position.

This is the scoring primitive of the think mode (rollout sampling, learner and readout build on it).
"""

from __future__ import annotations

import torch

from spiral.generation.actions import candidate_trie, tree_mask
from spiral.generation.prefix import forward_shared_prefixes


def score_thoughts(
    model,
    prompts: list[list[int]],
    rows: list[int],
    thoughts: list[list[int]],
    candidates: list[list[list[int]]],
    temperature: float = 1.0,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(thought log-probs (R,), candidate sequence log-probs [(n_r,)]) of R turns; differentiable.

    `prompts` are distinct; turn r plays prompt `rows[r]`, thought `thoughts[r]` (possibly empty) and the
    candidates `candidates[r]` (each a non-empty token list)."""
    out, mask, cache = forward_shared_prefixes(model, prompts)
    first = _logp(out.logits[:, -1, :], temperature)  # (P, V): the first token after each prompt
    idx = torch.tensor(rows)
    cache.batch_select_indices(idx)  # each turn's row starts from its prompt's cache (gathered, not copied)
    mask, first = mask[idx], first[idx]
    R = len(rows)
    lens = [len(t) for t in thoughts]
    lmax = max(lens)
    tries = [candidate_trie(c) for c in candidates]
    Q = lmax + max(len(t[0]) for t in tries)
    ids = torch.zeros((R, Q), dtype=torch.long)
    pos = torch.zeros((R, Q), dtype=torch.long)
    tail = torch.zeros((R, Q, Q), dtype=torch.bool)
    picks: list[
        tuple[int, int, int, int]
    ] = []  # (row, query or -1 for the prompt's own logits, target, slot)
    for r, (thought, (tokens, parents, steps)) in enumerate(zip(thoughts, tries, strict=True)):
        p_len, n = len(prompts[rows[r]]), lens[r]
        for j in range(lmax):
            tail[r, j, : (j + 1 if j < n else 0)] = True
            tail[r, j, j] = True  # a padding query sees itself (its output is unused)
            pos[r, j] = p_len + min(j, max(n - 1, 0))
            if j < n:
                ids[r, j] = thought[j]
                picks.append((r, j - 1, thought[j], -1))  # thought token j from the position before it
        depth: list[int] = []
        for q, (tok, parent) in enumerate(zip(tokens, parents, strict=True)):
            col = lmax + q
            ids[r, col] = tok
            tail[r, col, :n] = True
            tail[r, col, col] = True
            if parent >= 0:
                tail[r, col] |= tail[r, lmax + parent]
            depth.append(depth[parent] + 1 if parent >= 0 else 0)
            pos[r, col] = p_len + n + depth[q]
        last = n - 1  # the query whose logits predict every candidate's first token (-1: the prompt's)
        for k, c in enumerate(candidates[r]):
            picks.append((r, last, c[0], k))
        for node, target, k in steps:
            picks.append((r, lmax + node, target, k))
    if Q == 0:  # no thought and one-token candidates: the prompt's logits say everything
        logp = first[:, None, :]
    else:
        allowed = tree_mask(model, mask, tail)
        step = model(input_ids=ids, attention_mask=allowed, position_ids=pos, cache=cache, use_cache=True)
        logp = _logp(step.logits, temperature)  # (R, Q, V)
    r_, q_, t_, k_ = (torch.tensor(x) for x in zip(*picks, strict=True))
    from_prompt = q_ < 0
    values = torch.where(from_prompt, first[r_, t_], logp[r_, q_.clamp(min=0), t_])
    is_thought = k_ < 0
    thought_logp = torch.zeros(R, dtype=values.dtype).index_add(0, r_[is_thought], values[is_thought])
    starts = torch.tensor([0, *torch.cumsum(torch.tensor([len(c) for c in candidates]), 0).tolist()])
    flat = torch.zeros(int(starts[-1]), dtype=values.dtype)
    flat = flat.index_add(0, starts[r_[~is_thought]] + k_[~is_thought], values[~is_thought])
    return thought_logp, [flat[starts[r] : starts[r + 1]] for r in range(R)]


def _logp(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = logits.float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1)
