"""Playing a league: chunks of games per pair, a round-robin or budgeted schedule, a resumable JSONL log.

The unit of work is a chunk: `chunk` games of one pair (a, b) in one game, a < b by label, a's seat
alternating (game i: seat i % 2) and games 2k, 2k+1 sharing a deal, as in `spiral eval games`. A chunk's seed
comes from (league seed, game, a, b, chunk index) and both agents are reseeded from it before it starts, so a
chunk's games are the same whenever it is played. Each finished chunk is appended to games.jsonl in one
write; a resumed league replays the log and plays only the chunks it lacks, which gives the games, ratings
and tables of an uninterrupted league.

Schedules: `round-robin` plays `n` games per pair; ratings take the chunks in rounds (chunk 0 of every pair,
then chunk 1, ...). `budget` plays `budget` games per game: one chunk per pair first, then each further chunk
goes to the pair whose outcome the current ratings know least (the largest sqrt(sigma_a^2 + sigma_b^2) times
4 p (1 - p), p the predicted win probability; spiral.evaluation.league.ratings); ratings take the chunks in the
order they were chosen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runkit.errors import UserError
from runkit.io import atomic_write_json, atomic_write_text, read_json
from spiral.evaluation.games import GameResult, play_games
from spiral.evaluation.league.players import AgentCache, Player, reseed
from spiral.evaluation.league.ratings import Ratings

SCHEDULES = ("round-robin", "budget")
RATE_BY = ("game", "deal")
RATING_KEYS = ("rating", "tau", "rate_by")  # change no game of a round-robin league
Key = tuple[str, str, str, int]  # (game, a, b, chunk index)


@dataclass
class LeagueConfig:
    """What decides the games of a chunk; a league folder refuses to be continued with other values."""

    games: list[str]
    env_kwargs: dict[str, dict] = field(default_factory=dict)
    schedule: str = "round-robin"
    chunk: int = 32
    seed: int = 0
    rating: str = "plackett-luce"
    tau: float = 0.0
    rate_by: str = "game"  # game: each game's outcome; deal: the summed rewards of the two seats of a deal
    lm: dict[str, Any] = field(default_factory=dict)  # sampling of language-model players


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from any parts, stable across processes and Python versions."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class GameLog:
    """games.jsonl: one line per game, whole chunks only (a torn or partial chunk is dropped on load)."""

    def __init__(self, path: Path, chunk: int) -> None:
        self.path, self.chunk = path, chunk

    def load(self) -> dict[Key, list[dict]]:
        """Complete chunks by key; rewrites the file without what it drops."""
        chunks: dict[Key, list[dict]] = {}
        lines = self.path.read_bytes().splitlines() if self.path.is_file() else []
        bad = 0
        for line in lines:
            try:
                row = json.loads(line.decode("utf-8"))
                key = (row["env_id"], row["player"], row["opponent"], int(row["chunk"]))
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            chunks.setdefault(key, []).append(row)
        complete = {k: sorted(v, key=lambda r: r["game"]) for k, v in chunks.items() if len(v) == self.chunk}
        if bad or len(complete) != len(chunks):
            kept = [r for rows in complete.values() for r in rows]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        return complete

    def append(self, rows: list[dict]) -> None:
        """Append one chunk in one write, flushed to disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())


def outcomes(rows: list[dict], rate_by: str) -> list[str]:
    """The rating events of a chunk, from its first player's side: each game's outcome, or with `deal` one
    event per deal (games 2k and 2k+1, the same cards with the seats swapped) decided by the summed rewards,
    which takes the luck of the deal out (duplicate play) and lets chip margins count."""
    if rate_by == "game":
        return [r["outcome"] for r in rows]
    out = []
    for first, second in zip(rows[::2], rows[1::2], strict=True):
        total = first["reward"] + second["reward"]
        out.append("win" if total > 0 else "loss" if total < 0 else "draw")
    return out


def result_of(row: dict) -> GameResult:
    """A log row back as the GameResult of `player` (the row's a)."""
    names = {f.name for f in dataclasses.fields(GameResult)}
    return GameResult(**{k: v for k, v in row.items() if k in names})


def flipped(r: GameResult, label: str) -> GameResult:
    """The same game seen from the other seat (whose opponent is `label`)."""
    swap = {"win": "loss", "loss": "win", "draw": "draw"}
    return dataclasses.replace(
        r, opponent=label, seat=1 - r.seat, outcome=swap[r.outcome], reward=r.opponent_reward,
        opponent_reward=r.reward, model_turns=r.turns - r.model_turns, invalid=r.opponent_invalid,
        opponent_invalid=r.invalid, response_chars=[], response_tokens=[],
    )  # fmt: skip


class League:
    """Plays the chunks a schedule asks for and rates the players; see the module docstring."""

    def __init__(
        self,
        players: list[Player],
        config: LeagueConfig,
        out: str | Path,
        agents: AgentCache | None = None,
        on_chunk: Callable[[Key, list[dict]], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if config.schedule not in SCHEDULES:
            raise UserError(f"schedule must be one of {', '.join(SCHEDULES)}, got {config.schedule!r}")
        if config.rate_by not in RATE_BY:
            raise UserError(f"rate_by must be one of {', '.join(RATE_BY)}, got {config.rate_by!r}")
        if config.chunk < 2 or config.chunk % 2:
            raise UserError(f"--chunk must be an even number >= 2 (both seats of a deal), got {config.chunk}")
        self.players = {p.label: p for p in players}
        self.config, self.out = config, Path(out)
        self.agents = agents or AgentCache(config.lm)
        self.on_chunk, self.log = on_chunk, log or (lambda msg: None)
        self._check_config()
        self.store = GameLog(self.out / "games.jsonl", config.chunk)
        self.chunks = self.store.load()
        self.played = 0
        self.per_event = 2 if config.rate_by == "deal" else 1  # games behind one rating update

    def _check_config(self) -> None:
        path = self.out / "config.json"
        mine = {"kind": "league", **asdict(self.config)}
        saved = read_json(path) if path.is_file() else None
        if saved is not None:
            free = RATING_KEYS if self.config.schedule == "round-robin" else ()
            diff = [k for k in mine if saved.get(k) != mine[k] and k not in free]
            if diff:
                k = diff[0]
                raise UserError(
                    f"{self.out} holds games of a different league ({k}: {saved.get(k)!r} -> {mine[k]!r}); "
                    "choose another --out"
                )
        if saved != mine:
            atomic_write_json(path, mine)

    # ---- playing -------------------------------------------------------------------------------------
    def eligible(self, env_id: str) -> list[str]:
        """Labels of the players that play `env_id`, sorted."""
        return sorted(label for label, p in self.players.items() if self.agents.plays(p, env_id))

    def chunk(self, key: Key) -> list[dict]:
        """The chunk's games: from the log, or played now and appended."""
        if key in self.chunks:
            return self.chunks[key]
        env_id, a, b, k = key
        c = self.config
        seed = derive_seed(c.seed, env_id, a, b, k)
        agent_a = self.agents.get(self.players[a], env_id)
        agent_b = self.agents.get(self.players[b], env_id)
        reseed(agent_a, derive_seed(seed, "a"))
        reseed(agent_b, derive_seed(seed, "b"))
        results = play_games(
            agent_a, agent_b, env_id, c.chunk, seed, b, c.chunk, c.env_kwargs.get(env_id, {})
        )
        rows = []
        for i, r in enumerate(results):
            row = {k: v for k, v in asdict(r).items() if k != "transcript"}
            rows.append({**row, "player": a, "chunk": k, "game": k * c.chunk + i})
        self.store.append(rows)
        self.chunks[key] = rows
        self.played += 1
        wdl = [sum(r["outcome"] == o for r in rows) for o in ("win", "draw", "loss")]
        self.log(f"{env_id}: {a} vs {b}, chunk {k}: {wdl[0]} won, {wdl[1]} drawn, {wdl[2]} lost")
        if self.on_chunk is not None:
            self.on_chunk(key, rows)
        return rows

    def schedule(self, env_id: str, labels: list[str], n: int | None, budget: int | None) -> list[Key]:
        """The chunks of one game in rating order (playing the missing ones on the way)."""
        C = self.config.chunk
        pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]
        if not pairs:
            return []
        if self.config.schedule == "round-robin":
            if n is None or n < C or n % C:
                raise UserError(f"--n must be a positive multiple of --chunk ({C}), got {n}")
            order = [(env_id, a, b, k) for k in range(n // C) for a, b in pairs]
            for key in sorted(order, key=lambda x: (x[1], x[2], x[3])):  # one pair after another: fewer loads
                self.chunk(key)
            return order
        if budget is None or budget % C or budget < C * len(pairs):
            raise UserError(
                f"--budget must be a multiple of --chunk ({C}) and at least one chunk per pair "
                f"({C * len(pairs)} games for {len(pairs)} pairs), got {budget}"
            )
        ratings = Ratings(labels, self.config.rating, self.config.tau)
        order, count = [], dict.fromkeys(pairs, 0)
        for _ in range(budget // C):
            if len(order) < len(pairs):
                a, b = pairs[len(order)]
            else:  # the least certain pair; ties: fewer chunks, then the first in label order
                a, b = max(pairs, key=lambda p: (ratings.uncertainty(*p), -count[p]))
            key = (env_id, a, b, count[(a, b)])
            count[(a, b)] += 1
            for outcome in outcomes(self.chunk(key), self.config.rate_by):
                ratings.add(a, b, outcome, self.per_event)
            order.append(key)
        return order

    def run(self, n: int | None = None, budget: int | None = None) -> dict[str, Any]:
        """Play what is missing for every game; return per game the players, ratings and pair results."""
        out: dict[str, Any] = {}
        for env_id in self.config.games:
            labels = self.eligible(env_id)
            order = self.schedule(env_id, labels, n, budget)
            ratings = Ratings(labels, self.config.rating, self.config.tau)
            per_pair: dict[tuple[str, str], list[GameResult]] = {}
            for key in order:
                _, a, b, _k = key
                for outcome in outcomes(self.chunks[key], self.config.rate_by):
                    ratings.add(a, b, outcome, self.per_event)
                per_pair.setdefault((a, b), []).extend(result_of(row) for row in self.chunks[key])
            out[env_id] = {"labels": labels, "ratings": ratings, "pairs": per_pair, "order": order}
        return out
