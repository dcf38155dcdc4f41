"""Probe: where a model puts its constrained move probability in SimpleNegotiation-v1 self-play.

Plays N games of the model against itself with constrained decoding (the move drawn from the renormalised
probabilities of the legal `\\boxed{move}` answers, as the negotiation preset's rollout does) and reports, per
turn and per state (an offer pending or not), the mean probability of [Accept], [Deny] and of all offers
together, then the games' outcomes. If the model puts nearly all its mass on [Deny], self-play sees no trade,
every game is a draw, every advantage is 0 and nothing is trained (unless learner.train_zero_advantage).

With --opponent AGENT (heuristic, optimal, random) the model plays that agent instead, in both seats, and only
the model's states are counted: that shows what it does when an offer is pending, which self-play with a
model that never offers does not reach. --temperature T scores as a rollout at temperature T does.

Usage: python benchmarks/negotiation_move_probe.py [--model SPEC] [--games 6] [--seed 0] [--temperature 1]
       [--opponent self]
"""

from __future__ import annotations

import argparse
import collections

import torch

from spiral.agents import make_agent
from spiral.config import load_settings
from spiral.games.negotiation import SimpleNegotiation
from spiral.model import load_model, load_tokenizer
from spiral.training.factories import make_policy


def kind(move: str) -> str:
    """accept, deny or offer."""
    return "accept" if "Accept" in move else "deny" if "Deny" in move else "offer"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model spec or checkpoint (default: the preset's model)")
    ap.add_argument("--games", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--temperature", type=float, default=1.0, help="scoring temperature (rollout.temperature)"
    )
    ap.add_argument("--opponent", default="self", help="self, or an agent spec: heuristic, optimal, random")
    args = ap.parse_args()
    if args.temperature <= 0 or args.games < 1:
        ap.error("--temperature must be > 0 and --games >= 1")
    torch.set_num_threads(1)
    s = load_settings("negotiation-smollm2-cpu")
    spec = args.model or s.model.name
    tok = load_tokenizer(spec)
    policy = make_policy(s, load_model(spec, tok), tok, args.seed)
    opp = (
        None if args.opponent == "self" else make_agent(args.opponent, "SimpleNegotiation-v1", seed=args.seed)
    )
    rng = torch.Generator().manual_seed(args.seed)
    mass: dict[tuple[int, bool], list[dict[str, float]]] = collections.defaultdict(list)
    outcomes: collections.Counter = collections.Counter()
    played: collections.Counter = collections.Counter()
    for g in range(args.games):
        env = SimpleNegotiation()
        env.reset(seed=args.seed + g)
        done, turn = False, 0
        while not done:
            player, obs = env.get_observation()
            legal = list(env.legal_actions())
            if opp is not None and player != g % 2:  # the model sits in seat g % 2
                done, _ = env.step(opp.act(obs, legal, env=env))
                turn += 1
                continue
            scores = policy.generator.scores(
                policy.format.encode([obs]), [policy.candidates.for_legal(legal)], args.temperature
            )
            p = torch.softmax(scores[0], -1)
            by_kind: dict[str, float] = collections.Counter()
            for move, pm in zip(legal, p.tolist(), strict=True):
                by_kind[kind(move)] += pm
            mass[(turn, env.pending is not None)].append(dict(by_kind))
            move = legal[int(torch.multinomial(p, 1, generator=rng))]
            played[kind(move)] += 1
            done, _ = env.step(move)
            turn += 1
        rewards, _ = env.close()
        if opp is None:
            outcomes["draw" if rewards[0] == rewards[1] else "decided"] += 1
        else:
            mine, theirs = rewards[g % 2], rewards[1 - g % 2]
            outcomes["draw" if mine == theirs else "model won" if mine > theirs else "model lost"] += 1
    who = "self-play" if opp is None else f"against {args.opponent} (both seats)"
    print(f"model {spec}, {args.games} games {who}, constrained decoding at temperature {args.temperature:g}")
    print("| turn | offer pending | states | P(Accept) | P(Deny) | P(any offer) |")
    print("|---|---|---|---|---|---|")
    for (turn, pending), rows in sorted(mass.items()):
        m = {k: sum(r.get(k, 0.0) for r in rows) / len(rows) for k in ("accept", "deny", "offer")}
        print(f"| {turn + 1} | {'yes' if pending else 'no'} | {len(rows)} | {m['accept']:.4f} | {m['deny']:.4f} "
              f"| {m['offer']:.4f} |")  # fmt: skip
    print(f"moves played: {dict(played)}; outcomes: {dict(outcomes)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
