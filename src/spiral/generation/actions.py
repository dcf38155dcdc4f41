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

import itertools

import torch

from spiral.device import autocast_for, device_of
from spiral.generation.prefix import forward_shared_prefixes
from spiral.prompting import normalize_action

# lay candidates out as their prefix tree (False: each on its own, the layout before; benchmarks compare them)
SHARE_CANDIDATE_PREFIXES = True
# the most fp32 logits one trie pass may hold (rows x trie nodes x vocab x 4 bytes; log_softmax doubles it):
# Negotiation's ~200 offers make ~475 trie nodes a prompt: 128 prompts at once took 24 GB and were OOM-killed
SCORE_LOGITS_BYTES = 1 << 30


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
    once. The candidates of a prompt then share one row of a second forward pass laid out as their prefix tree
    (`candidate_trie`): a token shared by several candidates (`\\boxed{` in all of them) is computed once, and a
    tree-shaped attention mask lets each node see the prompt and its own ancestors only (positions restart after
    the prompt on every branch). The cache is never copied per candidate: 9 TicTacToe moves cost 13 query
    positions instead of 45.
    """
    if not prompts:
        return []
    tries = [candidate_trie(cands, SHARE_CANDIDATE_PREFIXES) for cands in candidates]
    scores: list[torch.Tensor] = []
    # rows in groups whose trie pass keeps its logits within SCORE_LOGITS_BYTES (one group when all fit)
    for a, b in _row_groups([len(t[0]) for t in tries], _vocab_size(model)):
        scores += _score_rows(model, prompts[a:b], candidates[a:b], tries[a:b], temperature)
    return scores


def _score_rows(model, prompts, candidates, tries, temperature: float) -> list[torch.Tensor]:
    """score_candidates for one group of rows, given their candidate tries."""
    out, mask, cache = forward_shared_prefixes(model, prompts)
    dev = mask.device
    first = out.logits[:, -1, :].float()  # (B, V): predicts every candidate's first token
    if temperature > 0 and temperature != 1.0:
        first = first / temperature
    first_logp = torch.log_softmax(first, dim=-1)
    B = len(prompts)
    scores = [
        first_logp[b, torch.tensor([c[0] for c in cands], device=dev)] for b, cands in enumerate(candidates)
    ]
    Q = max(len(t[0]) for t in tries)
    if Q > 0:
        # Row b holds the trie nodes of its candidates: node j is a distinct proper prefix c[:d + 1] of some
        # candidate (token c[d], depth d) and sees the prompt and its own ancestors; its logits predict the next
        # token of every candidate through it. Candidates that share `\\boxed{` share those nodes' logits.
        ids = torch.zeros((B, Q), dtype=torch.long)
        depth = torch.zeros((B, Q), dtype=torch.long)
        tree = torch.zeros((B, Q, Q), dtype=torch.bool)
        for b, (tokens, parents, _) in enumerate(tries):
            for j, (tok, parent) in enumerate(zip(tokens, parents, strict=True)):
                ids[b, j] = tok
                tree[b, j, j] = True
                if parent >= 0:
                    tree[b, j] |= tree[b, parent]
                    depth[b, j] = depth[b, parent] + 1
        ids, depth, tree = ids.to(dev), depth.to(dev), tree.to(dev)
        allowed = tree_mask(model, mask, tree)
        pos = torch.tensor([len(p) for p in prompts], device=dev)[:, None] + depth
        step = model(input_ids=ids, attention_mask=allowed, position_ids=pos, cache=cache, use_cache=True)
        logits = step.logits.float()  # (B, Q, V)
        if temperature > 0 and temperature != 1.0:
            logits = logits / temperature
        logp = torch.log_softmax(logits, dim=-1)
        # one gather for every (row, node, target) step (a per-row index would zero a full-size gradient per row)
        first = [0, *itertools.accumulate(len(c) for c in candidates)]  # each row's first slot in `sums`
        rows, nodes, targets, slots = [], [], [], []
        for b, (_, _, steps) in enumerate(tries):
            for node, target, k in steps:
                rows.append(b)
                nodes.append(node)
                targets.append(target)
                slots.append(first[b] + k)
        if rows:
            at = torch.tensor([rows, nodes, targets, slots], device=dev)
            picked = logp[at[0], at[1], at[2]]
            sums = torch.zeros(first[-1], dtype=logp.dtype, device=dev).index_add(0, at[3], picked)
            for b, cands in enumerate(candidates):
                scores[b] = scores[b] + sums[first[b] : first[b] + len(cands)]
    return scores


def tree_mask(model, prompt_mask: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
    """The attention mask (B, 1, Q, cache + Q) of Q queries on a prompt cache: each sees its row's prompt
    (`prompt_mask`, (B, cache)) and the queries `tail` (B, Q, Q) allows; boolean for SDPA, additive for eager."""
    B, Q = tail.shape[:2]
    past = prompt_mask.bool()[:, None, :].expand(B, Q, prompt_mask.shape[1])
    allowed = torch.cat([past, tail], dim=-1)[:, None]
    if getattr(model.config, "_attn_implementation", "sdpa") == "eager":
        dtype = next(model.parameters()).dtype
        allowed = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )
    return allowed


def candidate_trie(
    cands: list[list[int]], share: bool = True
) -> tuple[list[int], list[int], list[tuple[int, int, int]]]:
    """The prefix tree of one prompt's candidates: (token of each node, parent node or -1, steps).

    Nodes are the distinct proper prefixes c[:d + 1] (d < len(c) - 1), in first-seen order (a parent before its
    children); a step (node, target, k) says that candidate k's token `target` follows that node. With `share`
    off every candidate keeps its own nodes (the layout before the tree; benchmarks compare the two)."""
    index: dict[tuple[int, ...], int] = {}
    tokens: list[int] = []
    parents: list[int] = []
    steps: list[tuple[int, int, int]] = []
    for k, c in enumerate(cands):
        parent = -1
        for d in range(len(c) - 1):
            key = (tuple(c[: d + 1]), -1 if share else k)
            if key not in index:
                index[key] = len(tokens)
                tokens.append(c[d])
                parents.append(parent)
            parent = index[key]
            steps.append((parent, c[d + 1], k))
    return tokens, parents, steps


def restrict_moves(legal: list[str], max_units: int) -> list[str]:
    """`legal` without the Negotiation offers that give or ask more than `max_units` units (0: unchanged).

    Negotiation has ~200 legal offers a turn, and scoring them all makes a ~475-node prefix tree per prompt;
    at 3 units each way it is 18 offers. Other moves ([Accept], [Deny], other games' moves) always stay."""
    from spiral.games.negotiation import offer_terms

    if max_units <= 0:
        return legal
    out = []
    for move in legal:
        terms = offer_terms(move)
        if terms is None or max(terms[1], terms[3]) <= max_units:
            out.append(move)
    return out


def _vocab_size(model) -> int:
    config = getattr(model, "config", None)
    return int(getattr(config, "vocab_size", 0) or model.get_output_embeddings().weight.shape[0])


def _row_groups(nodes: list[int], vocab: int) -> list[tuple[int, int]]:
    """Consecutive row ranges whose padded trie logits (rows x max nodes x vocab, fp32) stay within
    SCORE_LOGITS_BYTES; a row over the budget on its own is a group of one. One group when everything fits."""
    groups, start, widest = [], 0, 0
    for i, q in enumerate(nodes):
        w = max(widest, q)
        if i > start and (i - start + 1) * w * vocab * 4 > SCORE_LOGITS_BYTES:
            groups.append((start, i))
            start, w = i, q
        widest = w
    groups.append((start, len(nodes)))
    return groups


def move_distribution(scores: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(log P(move | legal) per candidate, mass on legal boxes) from candidate sequence log-probs."""
    return torch.log_softmax(scores, dim=-1), float(scores.detach().exp().sum())


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
                with autocast_for(self.dtype, device_of(self.model)):
                    scores = score_candidates(self.model, [prompts[i] for i in chunk],
                                              [candidates[i] for i in chunk], temperature)  # fmt: skip
                for i, sc in zip(chunk, scores, strict=True):
                    out[i] = sc.float().cpu()
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
