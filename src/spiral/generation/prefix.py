"""Shared prompt prefixes: group prompts by a common prefix and run each group's prefix once.

Self-play prompts repeat their system prompt and rules in every game; the samplers and the learner compute those
tokens once per group (`plan_prefixes`; `forward_shared_prefixes` for a Hugging Face model, the fast engine its
own way) and each prompt's own part after it.
"""

from __future__ import annotations

import torch


def plan_prefixes(prompts: list[list[int]], min_len: int = 32):
    """Group prompts that share a long prefix: (group prefixes, group of each prompt, prefix length per prompt).

    Prompts are visited in sorted order. A prompt that shares n >= `min_len` tokens with the current group's
    prefix (P tokens, k members) joins when that computes fewer tokens than opening a group of its own: the
    prefix shrinks to n, so its k members recompute P - n tokens each and the prefix itself n - P fewer, while
    the new prompt saves n; it joins when (k - 1)(P - n) < n. Prompts whose own parts are long (TicTacToe's board
    and move list after the rules) still share the rules; a stray prompt cannot cut a large group's prefix short.
    Every prompt keeps at least its last token outside the prefix (its logits start the response).
    """
    groups: list[list[int]] = []
    size: list[int] = []
    group_of = [0] * len(prompts)
    for i in sorted(range(len(prompts)), key=lambda i: prompts[i]):
        p = prompts[i]
        cap = len(p) - 1
        if groups:
            pre = groups[-1]
            n = 0
            for a, b in zip(pre, p[:cap], strict=False):
                if a != b:
                    break
                n += 1
            if n >= min_len and (size[-1] - 1) * (len(pre) - n) < n:
                groups[-1] = pre[:n]
                size[-1] += 1
                group_of[i] = len(groups) - 1
                continue
        groups.append(p[:cap])
        size.append(1)
        group_of[i] = len(groups) - 1
    return groups, group_of, [len(groups[g]) for g in group_of]


def forward_shared_prefixes(
    model, prompts: list[list[int]], tails: list[list[int]] | None = None, logits_to_keep=1
):
    """Forward prompts (+ right-padded tails) computing each shared prompt prefix once; returns (out, mask, cache).

    Layout per row: [group prefix, left-padded] [prompt rest, left-padded] [tail, right-padded]; positions
    are those of the unpadded sequence, so logits and log-probs equal a plain forward pass. Gradients flow
    through the shared prefix (its cache rows are gathered, not copied).
    """
    from transformers import DynamicCache

    groups, group_of, cut = plan_prefixes(prompts)
    B, G = len(prompts), len(groups)
    C = max(len(g) for g in groups)
    pre_ids = torch.zeros((G, C), dtype=torch.long)
    pre_mask = torch.zeros((G, C), dtype=torch.long)
    for g, pre in enumerate(groups):
        if pre:
            pre_ids[g, C - len(pre) :] = torch.tensor(pre)
            pre_mask[g, C - len(pre) :] = 1
    dev = next(model.parameters()).device
    pre_ids, pre_mask, index = pre_ids.to(dev), pre_mask.to(dev), torch.tensor(group_of, device=dev)
    cache = DynamicCache(config=model.config)
    if C > 0:
        model(input_ids=pre_ids, attention_mask=pre_mask, position_ids=(pre_mask.cumsum(-1) - 1).clamp(min=0),
              cache=cache, use_cache=True, logits_to_keep=1)  # fmt: skip
        cache.batch_select_indices(index)
    tails = tails or [[] for _ in prompts]
    rests = [p[c:] for p, c in zip(prompts, cut, strict=True)]
    S, R = max(len(r) for r in rests), max(len(t) for t in tails)
    ids = torch.zeros((B, S + R), dtype=torch.long)
    seg = torch.zeros((B, S + R), dtype=torch.long)
    for b, (rest, tail) in enumerate(zip(rests, tails, strict=True)):
        ids[b, S - len(rest) : S] = torch.tensor(rest)
        ids[b, S : S + len(tail)] = torch.tensor(tail, dtype=torch.long)
        seg[b, S - len(rest) : S + len(tail)] = 1
    ids, seg = ids.to(dev), seg.to(dev)
    pos = torch.tensor(cut, device=dev)[:, None] + (seg.cumsum(-1) - 1).clamp(min=0)  # (B, S+R)
    mask = torch.cat([pre_mask[index], seg], dim=-1) if C > 0 else seg
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                logits_to_keep=logits_to_keep)  # fmt: skip
    return out, mask, cache
