"""League players: who they are (label, agent spec, kind, run and step) and their agents, loaded on demand.

A player is given as an agent spec of `spiral.agents.make_agent` (random, optimal, nash:alpha=0.2, minimax,
heuristic, best-response:vs=random, api:MODEL@URL, tiny, smollm2-135m-instruct, a model, checkpoint or run
folder), optionally named: `NAME=SPEC`. `--run RUN` adds every checkpoint of a run as a series of players
labelled `RUN@STEP` (the figure draws their rating against the step).
"""

from __future__ import annotations

import os
import random
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runkit.checkpoint import list_checkpoints
from runkit.errors import UserError
from spiral.agents.base import Agent

_NAMED = re.compile(r"^([A-Za-z0-9_.@+-]+)=(.+)$")  # NAME=SPEC; `nash:alpha=0.2` has a colon before its '='
_STEP = re.compile(r"^step_(\d+)$")
LM_SPECS = ("smollm2-135m-instruct", "smollm2", "SmolLM2-135M-Instruct", "tiny", "tiny-qwen3")


@dataclass(frozen=True)
class Player:
    """One league player. `kind`: fixed (a rule-based agent), model (a language model that is not a checkpoint
    of a run), checkpoint (of the run `run` at `step`), api. `series`: the run whose checkpoints were added
    with --run (drawn as a curve), else None (drawn as a horizontal line)."""

    label: str
    spec: str
    kind: str
    run: str | None = None
    step: int | None = None
    series: str | None = None

    @property
    def is_lm(self) -> bool:
        return self.kind in ("model", "checkpoint")


def _checkpoint_of(path: Path) -> tuple[Path, int] | None:
    """(run folder, step) when `path` is a checkpoint folder RUN/checkpoints/step_N."""
    m = _STEP.match(path.name)
    if m and path.parent.name == "checkpoints":
        return path.parent.parent, int(m.group(1))
    return None


def parse_player(text: str) -> Player:
    """A Player from `SPEC` or `NAME=SPEC`; a run folder means its newest checkpoint."""
    text = text.strip()
    m = _NAMED.match(text)
    label, spec = (m.group(1), m.group(2).strip()) if m else (None, text)
    if not spec:
        raise UserError(f"player {text!r} names no agent")
    if spec.startswith("api:"):
        return Player(label or spec, spec, "api")
    if spec in LM_SPECS or spec.startswith("tiny:"):
        return Player(label or spec, spec, "model")
    path = Path(spec)
    if path.is_dir():
        if (path / "checkpoints").is_dir():  # a run folder: its newest checkpoint
            found = list_checkpoints(path / "checkpoints")
            if not found:
                raise UserError(f"run folder {path} has no checkpoint yet")
            step, ckpt = found[-1]
            return Player(label or f"{path.resolve().name}@{step}", str(ckpt), "checkpoint", str(path), step)
        of = _checkpoint_of(path.resolve())
        if of is not None:
            run, step = of
            return Player(label or f"{run.name}@{step}", spec, "checkpoint", str(run), step)
        return Player(label or path.resolve().name, spec, "model")
    if os.sep in spec or spec.startswith("."):
        raise UserError(f"player {spec!r}: no such folder")
    return Player(label or spec, spec, "fixed")


def run_players(run_dir: str, max_checkpoints: int = 0) -> list[Player]:
    """Every checkpoint of a run as a player of the series `RUN` (at most `max_checkpoints`, evenly spaced,
    always with the first and the last; 0 = all)."""
    run = Path(run_dir)
    found = list_checkpoints(run / "checkpoints")
    if not found:
        raise UserError(f"{run} holds no checkpoints (a run folder has checkpoints/step_NNNNNN/)")
    if max_checkpoints and len(found) > max_checkpoints:
        if max_checkpoints == 1:
            found = found[-1:]
        else:
            idx = sorted(
                {round(i * (len(found) - 1) / (max_checkpoints - 1)) for i in range(max_checkpoints)}
            )
            found = [found[i] for i in idx]
    name = run.resolve().name
    return [Player(f"{name}@{step}", str(p), "checkpoint", str(run), step, name) for step, p in found]


def check_labels(players: list[Player]) -> None:
    """Labels name players in files and tables: they must be unique and fit on one line."""
    seen: dict[str, str] = {}
    for p in players:
        if p.label in seen:
            raise UserError(
                f"two players are labelled {p.label!r} ({seen[p.label]} and {p.spec}); name one with NAME=SPEC"
            )
        if any(c in p.label for c in "\n|"):
            raise UserError(f"player label {p.label!r} may not hold a line break or '|'")
        seen[p.label] = p.spec


def reseed(agent: Agent, seed: int) -> None:
    """Restart an agent's random stream at `seed`: a fixed agent's `rng`, a language model's sampler RNG.

    A chunk of league games reseeds both agents first, so a chunk's games do not depend on what the agents
    played before (a resumed league plays the same games as an uninterrupted one)."""
    rng = getattr(agent, "rng", None)
    if isinstance(rng, random.Random):
        rng.seed(seed)
    generator = getattr(getattr(agent, "policy", None), "generator", None)
    gen_rng = getattr(generator, "rng", None)
    if gen_rng is not None and hasattr(gen_rng, "manual_seed"):
        gen_rng.manual_seed(seed)


class AgentCache:
    """Agents per player, built on first use. Language models are shared by every game and at most
    `max_loaded` stay in memory (least recently used out); fixed agents are built per game."""

    def __init__(
        self,
        lm_options: dict[str, Any] | None = None,
        max_loaded: int = 4,
        factory: Callable[..., Agent] | None = None,
    ) -> None:
        from spiral.agents import make_agent

        self.lm_options = lm_options or {}
        self.max_loaded = max(1, max_loaded)
        self.make = factory or make_agent
        self._lm: OrderedDict[str, Agent] = OrderedDict()
        self._fixed: dict[tuple[str, str], Agent] = {}
        self.loads = 0

    def plays(self, player: Player, env_id: str) -> bool:
        """Whether the player takes part in `env_id` (a fixed agent may play some games only)."""
        if player.kind != "fixed":
            return True
        try:
            self.get(player, env_id)
        except UserError:
            return False
        return True

    def get(self, player: Player, env_id: str) -> Agent:
        """The player's agent for `env_id`."""
        if player.is_lm:
            if player.spec in self._lm:
                self._lm.move_to_end(player.spec)
                return self._lm[player.spec]
            while len(self._lm) >= self.max_loaded:
                self._lm.popitem(last=False)
            agent = self.make(player.spec, env_id, seed=0, **self.lm_options)
            self._lm[player.spec] = agent
            self.loads += 1
            return agent
        key = (player.label, env_id)
        if key not in self._fixed:
            extra = self.lm_options if player.kind == "api" else {}
            api = {k: v for k, v in extra.items() if k in ("temperature", "top_p")}
            self._fixed[key] = self.make(player.spec, env_id, seed=0, **api)
        return self._fixed[key]
