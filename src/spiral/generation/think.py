"""Scoring "think, then move" turns: the log-probability of a free-form thought and of each legal move after it.

A turn is (prompt, thought, legal moves). Its log-probability under the policy is

  log P(thought | prompt) + log P(move | legal, prompt + thought)

where the second term is constrained scoring (spiral.generation.actions) with the thought in the prefix. The
learner needs both parts for every turn, with gradients; `score_thoughts` computes them in two forward passes:
each distinct prompt once (shared prefixes once, as everywhere), then one row per turn holding its thought and
its legal moves' prefix tree (`candidate_trie`) on the prompt's cache. A causal mask covers the thought; each
tree node sees the prompt, the whole thought and its own ancestors. Logits are computed only in the second pass
and at the prompt's last position.

Sampling a turn (`ThinkSampler`): the thought is drawn token by token by the run's generator, up to
`rollout.think_tokens` tokens; it ends at the stop token, at the budget, or where the model starts to write
`\\box` (`ThoughtStop`; the thought is cut before that token, `cut_thought`). The move is then drawn from
the renormalised probabilities of the legal `\\boxed{move}` answers after prompt + thought (the constrained
scorer), so no move is invalid. Thought and move share one sampling RNG (one state in checkpoints).

The probability of a thought is the product of its tokens' probabilities; where it ended is not scored (the
end is a function of the tokens drawn, and the same definition holds for the behaviour and the learner's log-probs,
so the PPO ratio compares like with like).
"""

from __future__ import annotations

import torch

from spiral.generation.actions import candidate_trie, tree_mask
from spiral.generation.base import Sampling
from spiral.generation.prefix import forward_shared_prefixes

MARKER = "\\box"  # where a thought ends: the model starts its answer


class ThoughtStop:
    """A generator stop rule (like prompting.BoxStop): end a row once its text holds `\\box`."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.trigger_ids = torch.tensor([i for i, p in enumerate(pieces) if p is not None and "box" in p])

    def closes(self, tokens: list[int]) -> bool:
        """Whether the decoded response holds the marker."""
        return MARKER in self.tokenizer.decode(tokens, skip_special_tokens=True)


def cut_thought(
    tokens: list[int], logps: list[float], tokenizer, stop: set[int]
) -> tuple[list[int], list[float]]:
    """The thought of a sampled response: the tokens before a stop token and before the token that starts
    `\\box` (all of them when neither occurs), with their log-probs."""
    for k, t in enumerate(tokens):
        if t in stop:
            tokens, logps = tokens[:k], logps[:k]
            break
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    end = text.find(MARKER)
    if end < 0:
        return list(tokens), list(logps)
    keep = 0
    while keep < len(tokens) and len(tokenizer.decode(tokens[: keep + 1], skip_special_tokens=True)) <= end:
        keep += 1
    return list(tokens[:keep]), list(logps[:keep])


class ThinkSampler:
    """The `generator` of a think-mode policy: thoughts from the run's sampler, moves from the live model's
    constrained scores after them, one RNG for both."""

    def __init__(self, thoughts, model, tokenizer, stop: list[int], dtype: str = "fp32") -> None:
        self.thoughts, self.tokenizer, self.stop = thoughts, tokenizer, set(stop)
        thoughts.stop_rule = ThoughtStop(tokenizer)
        self.rng = thoughts.rng  # thoughts and moves: one sampling stream, one state in checkpoints
        self.model, self.dtype = model, dtype

    def load_weights(self, policy) -> None:
        """Copy the learner's weights into the thought sampler (moves are scored with the live model)."""
        self.thoughts.load_weights(policy)

    def get_state(self) -> torch.Tensor:
        return self.rng.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.rng.set_state(state)

    @torch.no_grad()
    def move_scores(self, prompts, thoughts, candidates, temperature: float = 1.0, chunk_tokens: int = 8192):
        """Candidate sequence log-probs after each prompt + thought, with the live model and the learner's own
        function (`score_thought_tokens`): distinct prompts once per chunk, thoughts and move trees on their caches."""
        from spiral.device import autocast_for

        model = self.model
        was = model.training
        model.eval()
        out: list[torch.Tensor | None] = [None] * len(prompts)
        try:
            for chunk in think_chunks(prompts, [len(t) for t in thoughts], chunk_tokens):
                distinct: dict[tuple, int] = {}
                rows = [distinct.setdefault(tuple(prompts[i]), len(distinct)) for i in chunk]
                with autocast_for(self.dtype, next(model.parameters()).device):
                    _, scores = score_thought_tokens(model, [list(p) for p in distinct], rows,
                                                     [thoughts[i] for i in chunk], [candidates[i] for i in chunk],
                                                     temperature)  # fmt: skip
                for i, sc in zip(chunk, scores, strict=True):
                    out[i] = sc.float().cpu()
        finally:
            model.train(was)
        return out

    def sample(self, prompts: list[list[int]], sampling: Sampling, budget: int):
        """[(thought tokens, their log-probs, hit the budget)] for each prompt."""
        gen = self.thoughts.generate(prompts, Sampling(sampling.temperature, sampling.top_p, budget))
        out = []
        for toks, lps, trunc in zip(gen.tokens, gen.logprobs, gen.truncated, strict=True):
            th, lp = cut_thought(toks, lps, self.tokenizer, self.stop)
            out.append((th, lp, trunc and len(th) == len(toks)))
        return out


def think_chunks(prompts: list[list[int]], lengths: list[int], budget: int) -> list[list[int]]:
    """Indices of turns (sorted by prompt) in chunks of about `budget` tokens, a distinct prompt's tokens counted
    once per chunk and each turn's `lengths` (thought + move) once."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    chunks: list[list[int]] = [[]]
    used, last = 0, None
    for i in order:
        size = lengths[i] + (len(prompts[i]) if prompts[i] != last else 0)
        if chunks[-1] and used + size > budget:
            chunks.append([])
            used, size = 0, lengths[i] + len(prompts[i])
        chunks[-1].append(i)
        used += size
        last = prompts[i]
    return [c for c in chunks if c]


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
    tokens, scores = score_thought_tokens(model, prompts, rows, thoughts, candidates, temperature)
    return tokens.sum(-1), scores


def score_thought_tokens(
    model,
    prompts: list[list[int]],
    rows: list[int],
    thoughts: list[list[int]],
    candidates: list[list[list[int]]],
    temperature: float = 1.0,
    thought_temperature: float | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """As `score_thoughts`, with each thought token's log-prob: (R, longest thought), 0 past a thought's end.
    The thought's tokens are scored at `thought_temperature` (None: `temperature`), the moves at `temperature`."""
    out, mask, cache = forward_shared_prefixes(model, prompts)
    dev = mask.device
    t_th = temperature if thought_temperature is None else thought_temperature
    last_logits = out.logits[:, -1, :]
    first = _logp(last_logits, temperature)  # (P, V): the first token after each prompt
    first_th = first if t_th == temperature else _logp(last_logits, t_th)
    idx = torch.tensor(rows, device=dev)
    cache.batch_select_indices(idx)  # each turn's row starts from its prompt's cache (gathered, not copied)
    mask, first, first_th = mask[idx], first[idx], first_th[idx]
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
                picks.append((r, j - 1, thought[j], -1 - j))  # thought token j from the position before it
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
        logp = logp_th = first[:, None, :]
    else:
        ids, pos, tail = ids.to(dev), pos.to(dev), tail.to(dev)
        allowed = tree_mask(model, mask, tail)
        step = model(input_ids=ids, attention_mask=allowed, position_ids=pos, cache=cache, use_cache=True)
        logp = _logp(step.logits, temperature)  # (R, Q, V)
        logp_th = logp if t_th == temperature else _logp(step.logits, t_th)
    r_, q_, t_, k_ = (torch.tensor(x, device=dev) for x in zip(*picks, strict=True))
    from_prompt, q_c = q_ < 0, q_.clamp(min=0)
    values = torch.where(from_prompt, first[r_, t_], logp[r_, q_c, t_])
    is_thought = k_ < 0
    if t_th != temperature:  # the thought's tokens at their own temperature
        values = torch.where(
            is_thought, torch.where(from_prompt, first_th[r_, t_], logp_th[r_, q_c, t_]), values
        )
    per_token = torch.zeros((R, max(lmax, 1)), dtype=values.dtype, device=dev)
    per_token = per_token.index_put((r_[is_thought], -1 - k_[is_thought]), values[is_thought])[:, :lmax]
    sizes = torch.tensor([len(c) for c in candidates], device=dev)
    starts = torch.cat([torch.zeros(1, dtype=torch.long, device=dev), torch.cumsum(sizes, 0)])
    flat = torch.zeros(int(starts[-1]), dtype=values.dtype, device=dev)
    flat = flat.index_add(0, starts[r_[~is_thought]] + k_[~is_thought], values[~is_thought])
    return per_token, [flat[starts[r] : starts[r + 1]] for r in range(R)]


def _logp(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = logits.float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1)
