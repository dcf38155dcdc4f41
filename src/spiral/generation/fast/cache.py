"""The fast engine's KV caches and the reuse of shared prompt prefixes.

- Torch path: a cache whose slot axis is shared by all rows (left padding aligns them), grown by `grow` slots at a
  time (a decode step attends to all its slots). Native kernels: every slot allocated up front (they attend to
  written slots only), finished rows leave through a row map, and attention skips the blocks of a row's own
  cache that hold only its prompt's left padding (`Cache.own_start`).
- Shared prompt prefixes (`spiral.generation.prefix.plan_prefixes`) are computed once and kept once per group,
  and stored across calls until the weights change (`prefix_cache_mb`, least recently used first out):
  self-play sends the same system prompt and rules every round, so later rounds compute only each prompt's
  own part.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from runkit.errors import UserError
from spiral.generation.prefix import plan_prefixes


@dataclass
class Prefix:
    """K/V of the shared prompt prefixes, one row per group, stored once and read once per group per step."""

    k: torch.Tensor  # (L, Gr, Hkv, C, D); under the native kernels their layout (native.Kernels.cache_shapes)
    v: torch.Tensor  # (L, Gr, Hkv, C, D); likewise
    bias: torch.Tensor  # (Gr, C) float: 0 for a real token, -inf for left padding
    start: torch.Tensor  # (Gr,) int32: first real slot of each group (the padding is on the left)


@dataclass
class Cache:
    """Static KV cache of each row's own tokens (after its group prefix); slot s is aligned across rows."""

    k: torch.Tensor  # (L, B, Hkv, T, D); under the native kernels their layout (native.Kernels.cache_shapes)
    v: torch.Tensor  # (L, B, Hkv, T, D); likewise
    valid: torch.Tensor  # (B, T) bool: slot holds a real token of the row
    group: torch.Tensor  # (B,) prefix group of each row, non-decreasing
    prefix: Prefix | None = None
    # native kernels: the cache row of each batch row (None: the same); compaction only drops entries
    rows: torch.Tensor | None = None
    # native kernels: (R,) int32 first slot of each cache row that holds a token (its prompt's left padding before)
    own_start: torch.Tensor | None = None

    def spans(self) -> list[tuple[int, int, int]]:
        """(group, first row, end row) of each run of rows sharing a prefix."""
        groups, counts = torch.unique_consecutive(self.group, return_counts=True)
        ends = counts.cumsum(0).tolist()
        return [(g, e - c, e) for g, c, e in zip(groups.tolist(), counts.tolist(), ends, strict=True)]


def _pad16(n: int) -> int:
    return -(-n // 16) * 16


class KVCaches:
    """Makes, resizes and prefills caches for `forward` (a `LlamaForward`), reusing stored prompt prefixes.

    `timing` (shared with the engine) counts the prefix tokens computed and reused.
    """

    def __init__(self, forward, pad_id: int, share_prefix: bool, grow: int, prefix_cache_mb: float,
                 timing: dict) -> None:  # fmt: skip
        self.forward, self.pad_id, self.share_prefix, self.grow = forward, pad_id, share_prefix, grow
        self.prefix_cache_mb, self.timing = prefix_cache_mb, timing
        # K/V of shared prompt prefixes computed by earlier calls (the same system prompt and rules come back each
        # round of self-play), keyed by their tokens; valid for the current weights only (`clear` on new weights)
        self.stored: OrderedDict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @property
    def kernels(self):
        return self.forward.kernels

    def new(self, B: int, T: int, group: torch.Tensor, prefix: Prefix | None = None) -> Cache:
        f = self.forward
        lead = (len(f.weights.layers), B, f.n_kv)
        if self.kernels is None:
            # Zeros: the torch decode step reads the unwritten slots too (masked; 0 * garbage could be NaN).
            shape = (*lead, T, f.head_dim)
            k, v = torch.zeros(shape, dtype=f.dtype), torch.zeros(shape, dtype=f.dtype)
        else:  # the native kernels' layouts (spiral.generation.native.Kernels.cache_shapes), slots in blocks of 16
            T = _pad16(T)
            k_shape, v_shape = self.kernels.cache_shapes(f.dtype, lead, T, f.head_dim)
            # no fill: the kernel masks unwritten key slots and zeroes what it reads of unwritten value slots
            k, v = torch.empty(k_shape, dtype=f.dtype), torch.empty(v_shape, dtype=f.dtype)
        return Cache(k, v, torch.zeros((B, T), dtype=torch.bool), group, prefix)

    def resize(self, cache: Cache, keep: torch.Tensor, T: int, written: int) -> Cache:
        """A cache of the rows `keep` with `T` slots, holding the first `written` slots of `cache`.

        Under the native kernels the cache holds every slot from the start and rows only leave the batch: the
        kept rows' entries of the row map, no copy.
        """
        if self.kernels is not None:
            if cache.valid.shape[1] < T:
                raise RuntimeError("the native cache is sized for max_new_tokens up front and never grows")
            rows = torch.arange(len(cache.group)) if cache.rows is None else cache.rows
            return Cache(
                cache.k, cache.v, cache.valid, cache.group[keep], cache.prefix, rows[keep], cache.own_start
            )
        out = self.new(len(keep), T, cache.group[keep], cache.prefix)
        out.k[:, :, :, :written] = cache.k[:, keep, :, :written]
        out.v[:, :, :, :written] = cache.v[:, keep, :, :written]
        out.valid[:, :written] = cache.valid[keep, :written]
        return out

    def prefill(
        self, prompts: list[list[int]], max_new: int
    ) -> tuple[torch.Tensor, Cache, torch.Tensor, int]:
        """Prompts (grouped rows adjacent) into a fresh cache: (last-token logits, cache, next positions, slot)."""
        B, f = len(prompts), self.forward
        if max(len(p) for p in prompts) + max_new > f.max_positions:
            raise UserError(
                f"a prompt of {max(len(p) for p in prompts)} tokens + rollout.max_new_tokens {max_new} exceeds the "
                f"model's {f.max_positions} positions; lower rollout.max_new_tokens"
            )
        groups, group_of, cut = plan_prefixes(prompts) if self.share_prefix else ([[]], [0] * B, [0] * B)
        prefix = None
        if max(len(g) for g in groups) > 0:
            rows = [group_of.count(g) for g in range(len(groups))]
            groups, cut = self._reuse_prefixes(groups, group_of, rows)
            prefix = self._prefix(groups, rows)
        rests = [p[c:] for p, c in zip(prompts, cut, strict=True)]
        S = max(len(r) for r in rests)
        # The torch decode step attends to every slot: its cache starts small and grows (`grow`). The native one
        # attends to the written slots only, so its cache holds every slot from the start (untouched memory is
        # never paged in) and finished rows leave by the row map alone.
        T = S + (max_new if self.kernels is not None else min(max_new, self.grow))
        cache = self.new(B, T, torch.tensor(group_of), prefix)
        ids = torch.full((B, S), self.pad_id, dtype=torch.long)
        pos = torch.zeros((B, S), dtype=torch.long)
        for b, (r, c) in enumerate(zip(rests, cut, strict=True)):
            ids[b, S - len(r) :] = torch.tensor(r)
            pos[b, S - len(r) :] = torch.arange(c, c + len(r))
            cache.valid[b, S - len(r) : S] = True  # later slots become valid as they are written
        if self.kernels is not None:  # attention skips the blocks of each row's left padding
            cache.own_start = torch.tensor([S - len(r) for r in rests], dtype=torch.int32)
        h = f(ids, pos, cache, 0)
        return f.logits(h), cache, torch.tensor([len(p) for p in prompts]), S

    def _reuse_prefixes(
        self, groups: list[list[int]], group_of: list[int], rows: list[int]
    ) -> tuple[list[list[int]], list[int]]:
        """Swap each group prefix for a stored one it starts with, where that computes fewer tokens.

        A stored prefix K that the group's prefix P begins with leaves P's remaining len(P) - len(K) tokens to
        each of the group's rows (`rows[g]` of them); it is taken when that costs less than computing P once.
        Returns the groups' prefixes and each prompt's prefix length.
        """
        out = list(groups)
        for g, p in enumerate(groups):
            best = max(
                (k for k in self.stored if len(k) <= len(p) and tuple(p[: len(k)]) == k),
                key=len,
                default=None,
            )
            if best is not None and (len(p) - len(best)) * rows[g] < len(p):
                out[g] = list(best)
        return out, [len(out[g]) for g in group_of]

    def _slots(self, t: torch.Tensor, keys: bool, a: int, b: int) -> torch.Tensor:
        """Slots [a, b) of a key (`keys`) or value cache tensor in this engine's layout (a, b multiples of 16)."""
        if self.kernels is None:
            return t[..., a:b, :]
        # native layouts (spiral.generation.native.Kernels.cache_shapes): bf16 keys (.., T/16, D/2, 16, 2), values
        # (.., T/2, D, 2)
        if self.forward.dtype == torch.bfloat16:
            return t[..., a // 16 : b // 16, :, :, :] if keys else t[..., a // 2 : b // 2, :, :]
        return t[..., a:b] if keys else t[..., a:b, :]

    def _prefix(self, groups: list[list[int]], rows: list[int]) -> Prefix:
        """The groups' prefixes, left-padded to a common length (a multiple of 16): stored ones copied in, the others
        computed in one forward (and stored when two or more rows share them)."""
        todo = [g for g, p in enumerate(groups) if p and tuple(p) not in self.stored]
        fresh = {}
        if todo:
            Cm = _pad16(max(len(groups[g]) for g in todo))
            pre = self.new(len(todo), Cm, torch.arange(len(todo)))
            ids = torch.full((len(todo), Cm), self.pad_id, dtype=torch.long)
            pos = torch.zeros((len(todo), Cm), dtype=torch.long)
            for i, g in enumerate(todo):
                p = groups[g]
                ids[i, Cm - len(p) :] = torch.tensor(p)
                pos[i, Cm - len(p) :] = torch.arange(len(p))
                pre.valid[i, Cm - len(p) :] = True
            self.forward(ids, pos, pre, 0)
            for i, g in enumerate(todo):
                Cg = _pad16(len(groups[g]))
                k = self._slots(pre.k[:, i : i + 1], True, Cm - Cg, Cm).clone()
                v = self._slots(pre.v[:, i : i + 1], False, Cm - Cg, Cm).clone()
                fresh[tuple(groups[g])] = (k, v)
                if rows[g] >= 2:
                    self._store(tuple(groups[g]), k, v)
            self.timing["prefix_tokens_computed"] += sum(len(groups[g]) for g in todo)
        C = _pad16(max(len(p) for p in groups))
        Gr = len(groups)
        out = self.new(Gr, C, torch.arange(Gr))
        for g, p in enumerate(groups):
            if not p:
                continue
            key = tuple(p)
            k, v = fresh[key] if key in fresh else self.stored[key]
            if key not in fresh:
                self.stored.move_to_end(key)
                self.timing["prefix_tokens_reused"] += len(p)
            Cg = _pad16(len(p))
            self._slots(out.k[:, g : g + 1], True, C - Cg, C).copy_(k)
            self._slots(out.v[:, g : g + 1], False, C - Cg, C).copy_(v)
            out.valid[g, C - len(p) :] = True
        bias = torch.zeros((Gr, C)).masked_fill_(~out.valid, float("-inf")).to(self.forward.dtype)
        start = torch.tensor([C - len(p) for p in groups], dtype=torch.int32)
        return Prefix(out.k, out.v, bias, start)

    def clear(self) -> None:
        """Forget the stored prefix K/V (they belong to the weights they were computed with)."""
        self.stored.clear()

    def _store(self, key: tuple[int, ...], k: torch.Tensor, v: torch.Tensor) -> None:
        """Keep a computed prefix for later calls (least recently used ones leave past `prefix_cache_mb`)."""
        self.stored[key] = (k, v)
        limit = self.prefix_cache_mb * 2**20
        while self.stored and sum(a.nbytes + b.nbytes for a, b in self.stored.values()) > limit:
            self.stored.popitem(last=False)
