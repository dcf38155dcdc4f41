"""The tabular twin of TicTacToe self-play: a softmax table over the legal cells of every board, played through
the same code as the language model (RolloutCollector on real TicTacToe-v0 games, the board parsed back from
each observation, RAE, drop_zero, ppo_clip_loss) with the same levers as the constrained recipe (entropy bonus
and KL to a moving magnet, both exact over the legal cells). Measured the way the LM runs are: loss and draw
rates against the minimax agent (random among optimal moves) and against random, both seats, temperature 1.

It answers in minutes what a TicTacToe LM run answers in hours: whether the RL recipe, at the LM run's budget in
turns, can move the loss rate against minimax at all (`python -m spiral.tabular_ttt --help`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass

import torch

from spiral.agents.lm import LMAgent, Response
from spiral.games.tictactoe import board_from_observation
from spiral.generation.actions import candidate_text
from spiral.generation.base import Sampling
from spiral.training.advantage import AdvantageEstimator, drop_zero
from spiral.training.losses import ppo_clip_loss
from spiral.training.rollout import RolloutCollector

STATES = 6000  # reachable boards with a player to move: 4,520 (a table row is made for each board met)


class BoardTable:
    """logits (STATES, 9) over the cells; a row per board met; `respond` has the LM policy's interface."""

    def __init__(self, seed: int = 0) -> None:
        self.logits = torch.zeros(STATES, 9, requires_grad=True)
        self.rows: dict[str, int] = {}
        self.rng = torch.Generator().manual_seed(seed)

    def row(self, board: str) -> int:
        return self.rows.setdefault(board, len(self.rows))

    def respond(self, observations: list[str], sampling: Sampling, legal: list[list[str]]) -> list[Response]:
        """A legal cell per observation, drawn from the row's softmax over the legal cells."""
        out = []
        for obs, lg in zip(observations, legal, strict=True):
            r = self.row(board_from_observation(obs))
            cells = [int(a.strip("[]")) for a in lg]
            with torch.no_grad():
                logp = torch.log_softmax(self.logits[r, cells] / sampling.temperature, dim=-1)
            m = int(torch.multinomial(logp.exp(), 1, generator=self.rng))
            out.append(
                Response(
                    [r], [cells[m]], [float(logp[m])], candidate_text(lg[m]), False, [[c] for c in cells], m
                )
            )
        return out


@dataclass
class TTTSettings:
    """One tabular TicTacToe run."""

    turns: int = 8300  # ttt-c trained 8,308 turns in 91 steps
    games_per_step: int = 12  # ttt-c: 12 games at once, turns_per_step 64: ~95 turns a step
    turns_per_step: int = 64
    lr: float = 0.05  # Adam on the logits
    ppo_epochs: int = 1
    clip: float = 0.2
    entropy_coef: float = 0.3
    kl_coef: float = 1.0
    magnet_every: int = 10
    decay: float = 0.95
    seed: int = 0
    eval_games: int = 400


def _ppo(table: BoardTable, ref: torch.Tensor, opt, batch: list, s: TTTSettings) -> None:
    rows = [t.prompt_ids[0] for t in batch]
    masks = torch.full(
        (len(batch), 9), -1e9
    )  # illegal cells: probability 0 (finite, so gradients stay finite)
    for i, t in enumerate(batch):
        masks[i, [c[0] for c in t.candidates]] = 0.0
    cells = torch.tensor([t.candidates[t.choice][0] for t in batch])
    old = torch.tensor([[t.old_logprobs[0]] for t in batch])
    adv = torch.tensor([t.advantage for t in batch])
    idx = torch.tensor(rows)
    for _ in range(s.ppo_epochs):
        logp_all = torch.log_softmax(table.logits[idx] + masks, dim=-1)
        logp = logp_all.gather(-1, cells[:, None])
        per_sample, _ = ppo_clip_loss(logp, old, adv, torch.ones_like(logp), s.clip, 1.0)
        p = logp_all.exp()
        loss = per_sample.mean() + s.entropy_coef * (p * logp_all).sum(-1).mean()
        if s.kl_coef:
            ref_lp = torch.log_softmax(ref[idx] + masks, dim=-1)
            kl = (p * (logp_all - ref_lp)).sum(-1).mean()
            loss = loss + s.kl_coef * kl
        opt.zero_grad()
        loss.backward()
        opt.step()


def evaluate(table: BoardTable, games: int, seed: int) -> dict[str, dict]:
    """Loss / draw / win rates against minimax and random, `games` games each (both seats), temperature 1."""
    from spiral.agents import make_agent
    from spiral.evaluation.games import play_games, summarize_games

    state = table.rng.get_state()
    agent = LMAgent(table, Sampling(1.0, 1.0, 1), name="table")
    out = {}
    for spec in ("optimal", "random"):
        rs = play_games(
            agent, make_agent(spec, "TicTacToe-v0", seed=seed), "TicTacToe-v0", games, seed, spec, 64
        )
        a = summarize_games(rs)["all"]
        out[spec] = {k: a[k] for k in ("loss_rate", "draw_rate", "win_rate")}
    table.rng.set_state(state)
    return out


def train_ttt(s: TTTSettings) -> dict:
    """Self-play of the table through the project's collector, RAE and PPO-clip; rates before and after."""
    torch.manual_seed(s.seed)
    table = BoardTable(s.seed)
    ref = table.logits.detach().clone()
    opt = torch.optim.Adam([table.logits], lr=s.lr)
    collector = RolloutCollector(table, ["TicTacToe-v0"], {}, num_envs=s.games_per_step, sampling=Sampling(1.0, 1.0, 1),
                                 seed=s.seed, keep_all=True)  # fmt: skip
    estimator = AdvantageEstimator("rae", s.decay)
    before = evaluate(table, s.eval_games, s.seed + 10_000)
    played, step, t0 = 0, 0, time.perf_counter()
    while played < s.turns:
        rollout = collector.collect(s.turns_per_step)  # as ttt-c: every turn of the step's games trains
        played += len(rollout.turns)
        estimator.assign(rollout.games)
        batch = drop_zero(rollout.turns)
        if batch:
            _ppo(table, ref, opt, batch, s)
        step += 1
        if s.magnet_every and step % s.magnet_every == 0:
            ref = table.logits.detach().clone()
    after = evaluate(table, s.eval_games, s.seed + 10_000)
    return {"settings": asdict(s), "steps": step, "turns": played, "boards": len(table.rows), "before": before,
            "after": after, "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`python -m spiral.tabular_ttt`: seeds of one setting; loss rate against minimax before and after."""
    parser = argparse.ArgumentParser(
        prog="python -m spiral.tabular_ttt", description=__doc__.split("\n\n")[0]
    )
    for name, value in asdict(TTTSettings()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (overrides --seed)")
    args = vars(parser.parse_args(argv))
    seeds = args.pop("seeds")
    for seed in range(seeds):
        r = train_ttt(TTTSettings(**{**args, "seed": seed}))
        b, a = r["before"]["optimal"], r["after"]["optimal"]
        print(json.dumps({"seed": seed, "turns": r["turns"], "steps": r["steps"], "seconds": r["seconds"],
                          "minimax_loss": [round(b["loss_rate"], 3), round(a["loss_rate"], 3)],
                          "minimax_draw": [round(b["draw_rate"], 3), round(a["draw_rate"], 3)],
                          "random_win": [round(r["before"]["random"]["win_rate"], 3),
                                         round(r["after"]["random"]["win_rate"], 3)]}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
