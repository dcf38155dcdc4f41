"""The tabular twin of Kuhn self-play: a softmax table per information set played through the same code as the
language model: RolloutCollector (real one-round KuhnPoker-v2 games, observations parsed back to information
sets), AdvantageEstimator (RAE), drop_zero and ppo_clip_loss, with the same stability levers (KL to the
starting policy, entropy bonus, a pool of past policies as opponents).

It answers in seconds what an LM run answers in an hour: whether the objective and the RL code can reach a low
exploitability at all. With chip rewards it does; with +1/-1 outcome rewards it cannot (calling weakly
dominates folding for every card in that game). `python -m spiral.tabular --help` runs the measurements of
docs/spiral_training.md. `card_scale > 0` makes it a card-blind twin: shared logits per betting history plus a
weak per-card table, which sits on the LM's card-blind plateau before it learns the card.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field

import torch

from spiral.agents.kuhn import KEYS, KuhnPolicyAgent, Policy, average_policy, exploitability
from spiral.agents.lm import Response
from spiral.games.kuhn_poker import infoset_from_observation
from spiral.generation.actions import candidate_text
from spiral.generation.base import Sampling
from spiral.training.advantage import AdvantageEstimator, drop_zero
from spiral.training.losses import ppo_clip_loss
from spiral.training.rollout import RolloutCollector
from spiral.training.schedule import linear_decay

INDEX = {k: i for i, k in enumerate(KEYS)}
HISTORIES = sorted({k[1:] for k in KEYS})  # "", "b", "p", "pb": the betting history without the card
HISTORY_OF = torch.tensor([HISTORIES.index(k[1:]) for k in KEYS])


class TablePolicy:
    """logits (12, 2) over [passive, aggressive]; `respond` has the LM policy's interface (constrained form:
    the response is the move's `\\boxed{}` answer, the candidates are the two moves)."""

    def __init__(self, seed: int = 0, card_scale: float = 0.0) -> None:
        self.table = torch.zeros(len(KEYS), 2, requires_grad=True)
        self.card_scale = card_scale
        # card_scale > 0: logits = shared[betting history] + card_scale * table, a twin of a shared network
        # whose card features start weak (the LM: P(move) nearly equal across cards at the start)
        self.shared = torch.zeros(len(HISTORIES), 2, requires_grad=True)
        self.rng = torch.Generator().manual_seed(seed)

    @property
    def logits(self) -> torch.Tensor:
        """(12, 2) logits of the information sets."""
        if not self.card_scale:
            return self.table
        return self.shared[HISTORY_OF] + self.card_scale * self.table

    def parameters(self) -> list[torch.Tensor]:
        """What the optimiser trains."""
        return [self.shared, self.table] if self.card_scale else [self.table]

    def policy(self) -> Policy:
        """P(bet or call) at each information set."""
        with torch.no_grad():
            p = torch.softmax(self.logits, dim=-1)[:, 1]
        return {k: float(p[i]) for k, i in INDEX.items()}

    def respond(self, observations: list[str], sampling: Sampling, legal: list[list[str]]) -> list[Response]:
        """Sample a move per observation; legal lists are [passive, aggressive] in Kuhn."""
        idx = torch.tensor([INDEX[infoset_from_observation(o)] for o in observations])
        with torch.no_grad():
            logp = torch.log_softmax(self.logits[idx] / sampling.temperature, dim=-1)
        moves = torch.multinomial(logp.exp(), 1, generator=self.rng).squeeze(-1).tolist()
        return [
            Response([int(i)], [m], [float(lp[m])], candidate_text(lg[m]), False, [[0], [1]], m)
            for i, m, lp, lg in zip(idx.tolist(), moves, logp, legal, strict=True)
        ]


@dataclass
class TabularSettings:
    """One tabular run: reward, sizes, PPO and the stability levers."""

    reward: str = "chips"  # chips or outcome (KuhnPoker-v2's reward option)
    turns: int = 8000  # total policy turns
    turns_per_step: int = 64
    lr: float = 0.05  # Adam on the logits
    ppo_epochs: int = 2
    clip: float = 0.2
    entropy_coef: float = 0.0
    # > 0: the entropy weight moves linearly from entropy_coef to entropy_final over this many steps
    entropy_decay_steps: int = 0
    entropy_final: float = 0.0
    kl_coef: float = 0.0  # KL(policy || magnet), exact per information set
    # steps between moves of the magnet to the current policy (0: the start, never moved)
    magnet_every: int = 0
    pool_size: int = 0
    pool_every: int = 10
    pool_prob: float = 0.5
    decay: float = 0.95  # RAE
    baseline: str = "role"  # RAE baselines per role (the paper's) or per state (information set)
    card_scale: float = 0.0  # > 0: shared logits per betting history + card_scale x a per-card table
    seed: int = 0
    eval_every: int = 10  # steps


@dataclass
class TabularResult:
    """Exploitability along the run (last iterate and reach-weighted average policy)."""

    settings: TabularSettings
    turns: list[int] = field(default_factory=list)
    exploitability: list[float] = field(default_factory=list)
    avg_exploitability: list[float] = field(default_factory=list)
    final_policy: Policy = field(default_factory=dict)
    seconds: float = 0.0

    def first_turns_below(self, level: float) -> int | None:
        """Turns played when the last iterate's exploitability first fell to `level` or below."""
        return next((t for t, e in zip(self.turns, self.exploitability, strict=True) if e <= level), None)


def train_tabular(s: TabularSettings) -> TabularResult:
    """Self-play of a softmax table through the project's collector, RAE and PPO-clip loss."""
    torch.manual_seed(s.seed)
    table = TablePolicy(s.seed, s.card_scale)
    start = table.logits.detach().clone()
    opt = torch.optim.Adam(table.parameters(), lr=s.lr)
    collector = RolloutCollector(
        table, ["KuhnPoker-v2"], {"KuhnPoker-v2": {"rounds": 1, "reward": s.reward}}, num_envs=s.turns_per_step,
        sampling=Sampling(1.0, 1.0, 1), seed=s.seed, keep_all=True,
    )  # fmt: skip
    pool: list[KuhnPolicyAgent] = []
    if s.pool_size:
        collector.pool = lambda: (
            pool[collector.rng.randrange(len(pool))]
            if pool and collector.rng.random() < s.pool_prob
            else None
        )
    estimator = AdvantageEstimator("rae", s.decay, key_by=s.baseline)
    result = TabularResult(s)
    history: list[Policy] = []
    start_policy = table.policy()
    result.turns.append(0)
    result.exploitability.append(exploitability(start_policy))
    result.avg_exploitability.append(result.exploitability[0])
    played, step, t0 = 0, 0, time.perf_counter()
    while played < s.turns:
        rollout = collector.collect(s.turns_per_step)
        played += len(rollout.turns)
        estimator.assign(rollout.games)
        batch = drop_zero(rollout.turns)
        if batch:
            entropy = linear_decay(step, s.entropy_coef, s.entropy_final, s.entropy_decay_steps)
            _ppo(table, start, opt, batch, s, entropy)
        step += 1
        if s.magnet_every and step % s.magnet_every == 0:
            start = table.logits.detach().clone()
        if s.pool_size and step % s.pool_every == 0:
            pool = [*pool, KuhnPolicyAgent(table.policy(), seed=s.seed + step)][-s.pool_size :]
        if step % s.eval_every == 0 or played >= s.turns:
            pol = table.policy()
            history.append(pol)
            result.turns.append(played)
            result.exploitability.append(exploitability(pol))
            result.avg_exploitability.append(exploitability(average_policy(history)))
    result.final_policy = table.policy()
    result.seconds = time.perf_counter() - t0
    return result


def _ppo(
    table: TablePolicy, start: torch.Tensor, opt, batch: list, s: TabularSettings, entropy: float
) -> None:
    """PPO-clip epochs over one step's turns, with the optional entropy bonus and KL to the start."""
    idx = torch.tensor([t.prompt_ids[0] for t in batch])
    move = torch.tensor([t.choice for t in batch])
    old = torch.tensor([[t.old_logprobs[0]] for t in batch])
    adv = torch.tensor([t.advantage for t in batch])
    seen = torch.unique(idx)
    ref = torch.log_softmax(start[seen], dim=-1)
    for _ in range(s.ppo_epochs):
        logp_all = torch.log_softmax(table.logits, dim=-1)
        logp = logp_all[idx].gather(-1, move[:, None])
        per_sample, _ = ppo_clip_loss(logp, old, adv, torch.ones_like(logp), s.clip, 1.0)
        loss = per_sample.mean()
        p = logp_all[seen].exp()
        if entropy:
            loss = loss + entropy * (p * logp_all[seen]).sum(-1).mean()
        if s.kl_coef:
            loss = loss + s.kl_coef * (p * (logp_all[seen] - ref)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def main(argv: list[str] | None = None) -> int:
    """`python -m spiral.tabular`: run seeds of one setting and print the exploitability they reach."""
    parser = argparse.ArgumentParser(prog="python -m spiral.tabular", description=__doc__.split("\n\n")[0])
    defaults = TabularSettings()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (overrides --seed)")
    parser.add_argument("--json", action="store_true")
    args = vars(parser.parse_args(argv))
    seeds, as_json = args.pop("seeds"), args.pop("json")
    rows = []
    for seed in range(seeds):
        r = train_tabular(TabularSettings(**{**args, "seed": seed}))
        late = r.exploitability[len(r.exploitability) * 3 // 4 :]
        rows.append({"seed": seed, "final": r.exploitability[-1], "final_avg": r.avg_exploitability[-1],
                     "min": min(r.exploitability), "late_max": max(late), "turns_to_0.30": r.first_turns_below(0.30),
                     "turns_to_0.15": r.first_turns_below(0.15),
                     "seconds": round(r.seconds, 1)})  # fmt: skip
    if as_json:
        print(json.dumps({"settings": args, "runs": rows}, indent=2))
    else:
        for row in rows:
            print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
