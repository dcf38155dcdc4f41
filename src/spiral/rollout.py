"""Vectorised self-play: N concurrent games, one batched generation per round, Turn records for the learner.

The generator sits behind a small interface (`Generator.generate(prompts, sampling)` returning token ids and
behaviour log-probs; `load_weights(model)` after each learner step) so that a faster engine can replace it.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from spiral.model import forward_shared_prefixes, merged_state_dict, plain_copy
from spiral.prompting import parse_action


@dataclass(frozen=True)
class Sampling:
    """How to sample: temperature 0 means greedy (its log-probs are those of temperature 1)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256


@dataclass
class Generation:
    """Responses of one generate call, in prompt order."""

    tokens: list[list[int]]  # sampled ids; the stop token is included when the model emitted one
    logprobs: list[list[float]]  # behaviour log-prob of each sampled id
    truncated: list[bool]  # True when max_new_tokens was reached before a stop token


def sample_tokens(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one id per row of `logits` (B, V); return ids and their log-probs under softmax(logits / T).

    With top_p < 1 the draw is restricted to the smallest set of ids holding top_p of the mass, but the
    returned log-prob is that of the untruncated temperature distribution: the function of the weights the
    learner recomputes, so that the PPO ratio compares like with like (the presets train with top_p = 1).
    """
    logits = logits.float()
    if temperature == 0:
        ids = logits.argmax(dim=-1)
        return ids, torch.log_softmax(logits, dim=-1).gather(-1, ids[:, None]).squeeze(-1)
    logp = torch.log_softmax(logits / temperature, dim=-1)  # (B, V)
    probs = logp.exp()
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p >= top_p  # mass before this id already covers top_p
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    ids = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return ids, logp.gather(-1, ids[:, None]).squeeze(-1)


def stop_on_rule(rule, new: torch.Tensor, stop: torch.Tensor, alive: torch.Tensor, rows: torch.Tensor,
                 toks: list[list[int]]) -> None:  # fmt: skip
    """Mark in `stop` the live rows whose new token completes what `rule` stops on (e.g. a closed box).

    `toks[rows[i]]` already ends with `new[i]`; the rule is asked only when `new[i]` is one of its triggers.
    """
    hit = (torch.isin(new, rule.trigger_ids) & alive & ~stop).nonzero().squeeze(-1)
    for i in hit.tolist():
        if rule.closes(toks[int(rows[i])]):
            stop[i] = True


class Generator:
    """Batched sampling with left padding and a KV cache; finished rows leave the batch.

    Holds its own copy of the weights in `dtype` (bf16 by default); `load_weights(policy)` copies the
    learner's current (LoRA-merged) weights in. With fp32 and a plain model it shares the policy's module.
    """

    def __init__(
        self,
        policy: nn.Module,
        eos_ids: list[int],
        pad_id: int,
        dtype: torch.dtype = torch.bfloat16,
        batch_size: int = 32,
        seed: int = 0,
        share_prefix: bool = True,
    ) -> None:
        self.dtype, self.batch_size, self.pad_id, self.share_prefix = dtype, batch_size, pad_id, share_prefix
        self.eos_ids = torch.tensor(sorted(set(eos_ids)))
        self.stop_rule = None  # optional prompting.BoxStop: end a row once its response holds a box
        self.shared = dtype == torch.float32 and not hasattr(policy, "peft_config")
        self.model = policy if self.shared else plain_copy(policy, dtype)
        self.rng = torch.Generator().manual_seed(seed)

    def load_weights(self, policy: nn.Module) -> None:
        """Copy the policy's current weights into the generation model (no-op when shared)."""
        if self.shared:
            return
        with torch.no_grad():
            self.model.load_state_dict(merged_state_dict(policy), strict=False)

    def get_state(self) -> torch.Tensor:
        """The sampling RNG state (for checkpoints)."""
        return self.rng.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Restore the sampling RNG state."""
        self.rng.set_state(state)

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> Generation:
        """Sample one response per prompt; batches of at most `batch_size` (similar prompts together)."""
        key = (lambda i: prompts[i]) if self.share_prefix else (lambda i: -len(prompts[i]))
        order = sorted(range(len(prompts)), key=key)
        tokens: list[list[int]] = [[] for _ in prompts]
        logprobs: list[list[float]] = [[] for _ in prompts]
        truncated = [False] * len(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                out = self._generate_batch([prompts[i] for i in chunk], sampling)
                for i, (t, lp, tr) in zip(chunk, zip(*out, strict=True), strict=True):
                    tokens[i], logprobs[i], truncated[i] = t, lp, tr
        finally:
            self.model.train(was_training)
        return Generation(tokens, logprobs, truncated)

    @torch.inference_mode()
    def _generate_batch(self, prompts: list[list[int]], sampling: Sampling):
        """One batch (left-padded, or with shared prefixes computed once); finished rows leave the cache."""
        from transformers import DynamicCache

        B, P = len(prompts), max(len(p) for p in prompts)
        if self.share_prefix:
            out, mask, cache = forward_shared_prefixes(self.model, prompts)
        else:
            ids = torch.full((B, P), self.pad_id, dtype=torch.long)
            mask = torch.zeros((B, P), dtype=torch.long)
            for b, p in enumerate(prompts):
                ids[b, P - len(p) :] = torch.tensor(p, dtype=torch.long)
                mask[b, P - len(p) :] = 1
            cache = DynamicCache(config=self.model.config)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                             cache=cache, use_cache=True, logits_to_keep=1)  # fmt: skip
        next_pos = torch.tensor([len(p) for p in prompts])  # (B,) position of the first response token
        rows = torch.arange(B)  # which original rows are still generating
        toks: list[list[int]] = [[] for _ in range(B)]
        lps: list[list[float]] = [[] for _ in range(B)]
        truncated = [True] * B
        for t in range(sampling.max_new_tokens):
            new, lp = sample_tokens(out.logits[:, -1, :], sampling.temperature, sampling.top_p, self.rng)
            for r, tok, logp in zip(rows.tolist(), new.tolist(), lp.tolist(), strict=True):
                toks[r].append(tok)
                lps[r].append(logp)
            stop = torch.isin(new, self.eos_ids)
            if self.stop_rule is not None:
                stop_on_rule(self.stop_rule, new, stop, torch.ones_like(stop), rows, toks)
            for r in rows[stop].tolist():
                truncated[r] = False
            if t == sampling.max_new_tokens - 1 or bool(stop.all()):
                break
            if bool(stop.any()):
                keep = (~stop).nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                rows, new, mask, next_pos = rows[keep], new[keep], mask[keep], next_pos[keep]
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=-1)
            out = self.model(
                input_ids=new[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                cache=cache, use_cache=True,
            )  # fmt: skip
            next_pos = next_pos + 1
        return toks, lps, truncated


@dataclass
class Turn:
    """One move by the learning policy: a training sample once its game has ended."""

    game_id: int
    env_id: str
    role: int
    prompt_ids: list[int]
    response_ids: list[int]
    old_logprobs: list[float]
    response_text: str
    legal_actions: list[str]
    invalid: bool = False  # the game rejected the move (under the run's parse mode)
    strict_ok: bool = False  # the last \boxed{} names a legal move
    lenient_ok: bool = False  # lenient parsing finds a legal move
    truncated: bool = False
    final_return: float = 0.0  # the role's return in its game (set when the game ends)
    advantage: float = 0.0
    candidates: list[list[int]] | None = None  # constrained decoding: the legal moves' response ids
    choice: int = -1  # constrained decoding: which candidate was played


@dataclass
class GameRecord:
    """A finished game: returns per player, which seats the policy played, and the game's info."""

    game_id: int
    env_id: str
    returns: dict[int, float]
    policy_roles: list[int]
    info: dict
    turns: list[Turn] = field(default_factory=list)


@dataclass
class Rollout:
    """One step's data: the kept turns, every finished game (in finishing order) and statistics."""

    turns: list[Turn]
    games: list[GameRecord]
    stats: dict[str, float]


class RolloutCollector:
    """Plays games concurrently until the step holds at least `turns_per_step` policy turns."""

    def __init__(
        self,
        policy,  # spiral.agents.lm.LMPolicy: respond(observations, sampling) -> list[Response]
        env_ids: list[str],
        env_kwargs: dict[str, dict] | None = None,
        num_envs: int = 32,
        sampling: Sampling = Sampling(),
        parse_mode: str = "strict",
        invalid_penalty: tuple[float, float] = (-1.5, 0.5),
        opponent=None,  # an Agent (or {env_id: Agent}) for the other seat; None: self-play
        seed: int = 0,
        keep_all: bool = False,
    ) -> None:
        self.policy, self.env_ids, self.num_envs, self.sampling = policy, list(env_ids), num_envs, sampling
        self.env_kwargs = env_kwargs or {}
        self.parse_mode, self.invalid_penalty = parse_mode, tuple(invalid_penalty)
        self.opponents = (
            opponent if isinstance(opponent, dict) or opponent is None else dict.fromkeys(env_ids, opponent)
        )
        self.rng = random.Random(seed)
        self.games_started = 0
        self.keep_all = keep_all  # train on every played turn (else exactly turns_per_step of them)
        # Optional per-game opponents: pool() -> an Agent for the policy's other seat, or None for self-play
        # (e.g. a past checkpoint drawn from a pool). Asked once per game, after the fixed opponents.
        self.pool = None

    def make_env(self, env_id: str):
        """A fresh game with the run's parse mode and invalid-move penalty."""
        from spiral.games import make

        kw = dict(self.env_kwargs.get(env_id, {}))
        return make(env_id, parse_mode=self.parse_mode, invalid_penalty=self.invalid_penalty, **kw)

    def _start(self) -> dict:
        """Start the next game: env ids in turn; with an opponent the policy's seat alternates."""
        gid = self.games_started
        self.games_started += 1
        env_id = self.env_ids[gid % len(self.env_ids)]
        env = self.make_env(env_id)
        env.reset(num_players=2, seed=self.rng.randrange(2**31))
        seats = [0, 1] if self.opponents is None else [gid % 2]
        opponent = self.opponents[env_id] if self.opponents is not None else None
        if opponent is None and self.pool is not None:
            opponent = self.pool()
            if opponent is not None:
                seats = [gid % 2]
        return {"id": gid, "env_id": env_id, "env": env, "seats": seats, "turns": [], "opponent": opponent}

    def collect(self, turns_per_step: int) -> Rollout:
        """Play until enough policy turns are in finished games; keep exactly `turns_per_step` at random."""
        t0 = time.perf_counter()
        finished, timing = self._play(lambda taken, active, started: taken + active < turns_per_step)
        pool = [t for game in finished for t in game.turns]
        if self.keep_all or len(pool) <= turns_per_step:
            kept = list(pool)
        else:
            kept = self.rng.sample(pool, turns_per_step)
        stats = rollout_stats(pool, kept, finished)
        stats.update(timing)
        stats["rollout/seconds"] = time.perf_counter() - t0
        return Rollout(kept, finished, stats)

    def play_games(self, n: int) -> list[GameRecord]:
        """Play exactly `n` whole games (evaluation); finished games in finishing order."""
        return self._play(lambda taken, active, started: started < n)[0]

    def _play(self, want_more) -> tuple[list[GameRecord], dict[str, float]]:
        """Run rounds over up to `num_envs` live games; `want_more(taken, active, started)` gates new games."""
        gen_s, gen_tokens = 0.0, 0
        active: list[dict] = []
        finished: list[GameRecord] = []
        taken, started = 0, 0
        while True:
            while len(active) < self.num_envs and want_more(taken, len(active), started):
                active.append(self._start())
                started += 1
                if started > 100_000:
                    raise RuntimeError("games keep ending without a policy move; check the opponent settings")
            if not active:
                break
            views = []
            for g in active:
                pid, obs = g["env"].get_observation()
                views.append((g, pid, obs, list(g["env"].legal_actions())))
            mine = [v for v in views if v[1] in v[0]["seats"]]
            theirs = [v for v in views if v[1] not in v[0]["seats"]]
            actions: dict[int, str] = {}
            if mine:
                t1 = time.perf_counter()
                responses = self.policy.respond([v[2] for v in mine], self.sampling, [v[3] for v in mine])
                gen_s += time.perf_counter() - t1
                for (g, pid, _obs, legal), resp in zip(mine, responses, strict=True):
                    gen_tokens += len(resp.tokens)
                    actions[g["id"]] = resp.text
                    g["turns"].append(_turn(g, pid, legal, resp))
                    taken += 1
            for agent_id in dict.fromkeys(id(v[0]["opponent"]) for v in theirs):
                group = [v for v in theirs if id(v[0]["opponent"]) == agent_id]
                texts = group[0][0]["opponent"].act_batch([v[2] for v in group], [v[3] for v in group],
                                                          [v[0]["env"] for v in group])  # fmt: skip
                actions.update({v[0]["id"]: a for v, a in zip(group, texts, strict=True)})
            still = []
            for g, pid, _obs, _legal in views:
                done, info = g["env"].step(actions[g["id"]])
                if info.get("invalid_move") and pid in g["seats"]:
                    g["turns"][-1].invalid = True
                if done:
                    finished.append(self._finish(g))
                else:
                    still.append(g)
            active = still
        timing = {"rollout/gen_seconds": gen_s, "rollout/gen_tokens_per_s": gen_tokens / max(gen_s, 1e-9)}
        return finished, timing

    def _finish(self, g: dict) -> GameRecord:
        """Close a game and write each policy turn's final return."""
        rewards, info = g["env"].close()
        for t in g["turns"]:
            t.final_return = float(rewards.get(t.role, 0.0))
        roles = sorted({t.role for t in g["turns"]})
        return GameRecord(
            g["id"], g["env_id"], {int(k): float(v) for k, v in rewards.items()}, roles, info, g["turns"]
        )


def _turn(g: dict, pid: int, legal: list[str], resp) -> Turn:
    """A Turn from a live game and the policy's response."""
    return Turn(
        game_id=g["id"], env_id=g["env_id"], role=pid, prompt_ids=resp.prompt_ids, response_ids=resp.tokens,
        old_logprobs=resp.logprobs, response_text=resp.text, legal_actions=legal, truncated=resp.truncated,
        strict_ok=parse_action(resp.text, legal, "strict") is not None,
        lenient_ok=parse_action(resp.text, legal, "lenient") is not None,
        candidates=getattr(resp, "candidates", None), choice=getattr(resp, "choice", -1),
    )  # fmt: skip


def rollout_stats(pool: list[Turn], kept: list[Turn], games: list[GameRecord]) -> dict[str, float]:
    """Invalid rates (game verdict, strict, lenient), lengths and outcomes per game id."""
    n = max(len(pool), 1)
    s: dict[str, float] = {
        "rollout/games": float(len(games)),
        "rollout/turns_played": float(len(pool)),
        "rollout/turns_kept": float(len(kept)),
        "rollout/invalid_rate": sum(t.invalid for t in pool) / n,
        "rollout/invalid_rate_strict": sum(not t.strict_ok for t in pool) / n,
        "rollout/invalid_rate_lenient": sum(not t.lenient_ok for t in pool) / n,
        "rollout/truncated_rate": sum(t.truncated for t in pool) / n,
        "rollout/response_tokens": sum(len(t.response_ids) for t in pool) / n,
        "rollout/response_chars": sum(len(t.response_text) for t in pool) / n,
        "rollout/return_mean": sum(t.final_return for t in kept) / max(len(kept), 1),
    }
    by_env: dict[str, list[GameRecord]] = defaultdict(list)
    for g in games:
        by_env[g.env_id].append(g)
    for env_id, gs in by_env.items():
        k = len(gs)
        s[f"rollout/{env_id}/p0_win_rate"] = sum(g.returns.get(0, 0) > g.returns.get(1, 0) for g in gs) / k
        s[f"rollout/{env_id}/draw_rate"] = sum(g.returns.get(0, 0) == g.returns.get(1, 0) for g in gs) / k
        s[f"rollout/{env_id}/game_turns"] = sum(g.info.get("turns", 0) for g in gs) / k
    return s
