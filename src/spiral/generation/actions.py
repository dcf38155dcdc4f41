"""Scoring a game's legal moves as text: constrained action decoding and the exact policy readout.

For a prompt and its legal moves, candidate i is the token sequence of `\\boxed{m_i}` (m_i the move without
its brackets, as the strict parser accepts it). Its score is the sum of the model's log-probs of those tokens
right after the prompt, under softmax(logits / T):

  P(m_i | legal) = softmax_i(score)            the move distribution renormalised over legal moves
  1 - sum_i exp(score_i)                        the mass the model puts on any other text (invalid or longer
                                                answers; the readout reports it, constrained decoding drops it)

Constrained decoding samples the move from P(m_i | legal): no invalid moves, and one scored choice per turn,
at the price of the free-form reasoning the paper studies. The learner then computes log P(m | legal) with the
same function, so the PPO ratio compares like with like. Prompts are scored once per distinct prompt, with
their shared prefixes computed once (spiral.model.forward_shared_prefixes), and the candidates of a prompt
share its cache: a prefix tree of seat prefix -> state tail -> candidate moves.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from spiral.generation.prefix import forward_shared_prefixes
from spiral.prompting import normalize_action


def candidate_text(move: str) -> str:
    """The response that plays `move` under strict parsing: `\\boxed{bet}` for `[bet]`."""
    return "\\boxed{" + normalize_action(move) + "}"


class Candidates:
    """Token ids of each legal move's `\\boxed{move}` response, cached per move."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._ids: dict[str, list[int]] = {}

    def ids(self, move: str) -> list[int]:
        """Token ids of the candidate response of `move`."""
        if move not in self._ids:
            self._ids[move] = list(
                self.tokenizer(candidate_text(move), add_special_tokens=False)["input_ids"]
            )
        return self._ids[move]

    def for_legal(self, legal: list[str]) -> list[list[int]]:
        """Candidate ids of every legal move, in the order of `legal`."""
        return [self.ids(m) for m in legal]


def score_candidates(
    model, prompts: list[list[int]], candidates: list[list[list[int]]], temperature: float = 1.0
) -> list[torch.Tensor]:
    """Sequence log-probs (n_i,) of each prompt's candidate responses; differentiable when grad is enabled.

    `prompts` should be distinct (callers deduplicate); prompt prefixes shared by several prompts are computed
    once. The candidates of a prompt then share one row of a second forward pass: their tokens follow the
    prompt's cache side by side, and a tree-shaped attention mask lets each token see the prompt and the earlier
    tokens of its own candidate only (positions restart after the prompt for every candidate). The cache is never
    copied per candidate, so scoring costs about the same for 2 legal moves as for 9.
    """
    if not prompts:
        return []
    out, mask, cache = forward_shared_prefixes(model, prompts)
    first = out.logits[:, -1, :].float()  # (B, V): predicts every candidate's first token
    if temperature > 0 and temperature != 1.0:
        first = first / temperature
    first_logp = torch.log_softmax(first, dim=-1)
    B = len(prompts)
    scores = [first_logp[b, torch.tensor([c[0] for c in cands])] for b, cands in enumerate(candidates)]
    Q = max(sum(len(c) - 1 for c in cands) for cands in candidates)
    if Q > 0:
        # Row b holds the tokens c[:-1] of its candidates one after another; query j of candidate k predicts
        # c_k[j + 1]. `cand` names each query's candidate (-1: padding), `off` its offset within it.
        ids = torch.zeros((B, Q), dtype=torch.long)
        target = torch.zeros((B, Q), dtype=torch.long)
        cand = torch.full((B, Q), -1, dtype=torch.long)
        off = torch.zeros((B, Q), dtype=torch.long)
        for b, cands in enumerate(candidates):
            q = 0
            for k, c in enumerate(cands):
                n = len(c) - 1
                ids[b, q : q + n] = torch.tensor(c[:-1], dtype=torch.long)
                target[b, q : q + n] = torch.tensor(c[1:], dtype=torch.long)
                cand[b, q : q + n] = k
                off[b, q : q + n] = torch.arange(n)
                q += n
        real = cand >= 0
        same = (cand[:, :, None] == cand[:, None, :]) & real[:, :, None]
        tree = same & (off[:, None, :] <= off[:, :, None])  # (B, Q, Q): own candidate, not later tokens
        past = mask.bool()[:, None, :].expand(B, Q, mask.shape[1])  # every query sees its prompt
        allowed = torch.cat([past, tree], dim=-1)[:, None]  # (B, 1, Q, cache + Q)
        if getattr(model.config, "_attn_implementation", "sdpa") == "eager":
            dtype = next(model.parameters()).dtype
            allowed = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        pos = torch.tensor([len(p) for p in prompts])[:, None] + off
        step = model(input_ids=ids, attention_mask=allowed, position_ids=pos, cache=cache, use_cache=True)
        logits = step.logits.float()  # (B, Q, V)
        if temperature > 0 and temperature != 1.0:
            logits = logits / temperature
        tok = torch.log_softmax(logits, dim=-1).gather(-1, target[..., None]).squeeze(-1) * real
        for b, cands in enumerate(candidates):
            sums = torch.zeros(len(cands), dtype=tok.dtype).index_add(0, cand[b].clamp(min=0), tok[b])
            scores[b] = scores[b] + sums
    return scores


def move_distribution(scores: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(log P(move | legal) per candidate, mass on legal boxes) from candidate sequence log-probs."""
    return torch.log_softmax(scores, dim=-1), float(scores.detach().exp().sum())


def autocast_for(dtype: str):
    """bf16 autocast on the CPU for dtype 'bf16', else nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


class MoveSampler:
    """Constrained decoding for the live policy model: the `generator` of a ConstrainedPolicy.

    Holds no weights of its own (it scores with the learner's model, so `load_weights` has nothing to copy) and
    one RNG for the move draws (saved in checkpoints like a generator's)."""

    def __init__(self, model, dtype: str = "fp32", seed: int = 0, chunk_tokens: int = 16384) -> None:
        self.model, self.dtype, self.chunk_tokens = model, dtype, chunk_tokens
        self.rng = torch.Generator().manual_seed(seed)

    def load_weights(self, policy) -> None:
        """Nothing to copy: moves are scored with the policy model itself."""

    def get_state(self) -> torch.Tensor:
        """The move-draw RNG state (for checkpoints)."""
        return self.rng.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Restore the move-draw RNG state."""
        self.rng.set_state(state)

    @torch.no_grad()
    def scores(self, prompts: list[list[int]], candidates: list[list[list[int]]], temperature: float = 1.0):
        """Candidate sequence log-probs of distinct prompts, in chunks of about `chunk_tokens` prompt tokens."""
        was = self.model.training
        self.model.eval()
        try:
            out: list[torch.Tensor | None] = [None] * len(prompts)
            for chunk in token_chunks(prompts, self.chunk_tokens):  # chunks hold prompts in sorted order
                with autocast_for(self.dtype):
                    scores = score_candidates(self.model, [prompts[i] for i in chunk],
                                              [candidates[i] for i in chunk], temperature)  # fmt: skip
                for i, sc in zip(chunk, scores, strict=True):
                    out[i] = sc.float()
            return out
        finally:
            self.model.train(was)


def token_chunks(prompts: list[list[int]], budget: int) -> list[list[int]]:
    """Indices of `prompts` (sorted, so that shared prefixes meet) in groups of about `budget` tokens."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    chunks: list[list[int]] = [[]]
    used = 0
    for i in order:
        if chunks[-1] and used + len(prompts[i]) > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(i)
        used += len(prompts[i])
    return [c for c in chunks if c]
