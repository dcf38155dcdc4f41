"""Vectorised self-play: N concurrent games, one batched generation per round, Turn records for the learner.

The policy answers a batch of observations (`spiral.agents.lm.LMPolicy` over a generator of
`spiral.generation`); the collector keeps the games going and turns every move into a `Turn`.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

from spiral.generation.base import Sampling
from spiral.prompting import parse_action


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
    thought_len: int = -1  # think mode: the first thought_len response ids are the thought, then the move


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
        thought_len=getattr(resp, "thought_len", -1),
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
