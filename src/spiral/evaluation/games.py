"""`spiral eval games`: win rates of a language model against fixed opponents, both seats, batched.

Games run concurrently; each round, every game where the model is to move joins one batched generation.
Game i gives the model seat i % 2, and games 2k and 2k+1 share a deal (seed), so both seats see the same
cards. An invalid move ends the game as a loss for its maker (the paper's evaluation rule).
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runkit.errors import UserError

DEFAULT_GAMES = "TicTacToe-v0,KuhnPoker-v1,SimpleNegotiation-v1"


@dataclass
class GameResult:
    """One finished game seen from the evaluated model's seat."""

    env_id: str
    opponent: str
    seat: int
    seed: int
    outcome: str  # win / draw / loss for the model
    reward: float
    turns: int
    model_turns: int
    invalid: bool  # the model's move was invalid (and ended the game)
    opponent_invalid: bool
    reason: str
    response_chars: list[int] = field(default_factory=list)
    response_tokens: list[int] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    opponent_reward: float = 0.0
    deal: dict[str, float] = field(default_factory=dict)  # negotiation: trades, own / opponent value change


def _token_counts(agent: Any, texts: list[str]) -> list[int | None]:
    """Token counts of the agent's last responses when it exposes them (the LM agent does)."""
    last = getattr(agent, "last_responses", None)
    if last and len(last) == len(texts):
        # A finished (not truncated) response ends with its stop token, which is not part of the text.
        return [len(r.tokens) - (not getattr(r, "truncated", True)) for r in last]
    return [None] * len(texts)


def play_games(
    model: Any,
    opponent: Any,
    env_id: str,
    n: int,
    seed: int = 0,
    opponent_name: str = "opponent",
    concurrent: int = 128,
    env_kwargs: dict[str, Any] | None = None,
    on_game=None,
) -> list[GameResult]:
    """Play `n` games of `model` (an Agent, batched through act_batch) against `opponent`, seats alternating."""
    from spiral.games import make

    kwargs = {"parse_mode": "strict", "invalid_penalty": "eval", **(env_kwargs or {})}
    rng = random.Random(seed)
    deal_seeds = [rng.getrandbits(31) for _ in range((n + 1) // 2)]
    pending = list(range(n))
    active: list[dict[str, Any]] = []
    results: list[GameResult | None] = [None] * n
    while pending or active:
        while pending and len(active) < concurrent:
            i = pending.pop(0)
            env = make(env_id, **kwargs)
            env.reset(num_players=2, seed=deal_seeds[i // 2])
            active.append({"i": i, "env": env, "seat": i % 2, "log": [], "chars": [], "tokens": []})
        views = []
        for g in active:
            player, obs = g["env"].get_observation()
            views.append((g, player, obs, list(g["env"].legal_actions())))
        actions: dict[int, str] = {}
        for agent, mine in ((model, True), (opponent, False)):
            group = [v for v in views if (v[1] == v[0]["seat"]) == mine]
            if not group:
                continue
            texts = agent.act_batch(
                [v[2] for v in group], [v[3] for v in group], [v[0]["env"] for v in group]
            )
            tokens = _token_counts(agent, texts) if mine else [None] * len(texts)
            for (g, player, obs, _legal), text, ntok in zip(group, texts, tokens, strict=True):
                actions[g["i"]] = text
                g["log"].append({"player": player, "agent": "model" if mine else opponent_name,
                                 "observation": obs, "response": text})  # fmt: skip
                if mine:
                    g["chars"].append(len(text))
                    if ntok is not None:
                        g["tokens"].append(ntok)
        still = []
        for g, _player, _obs, _legal in views:
            done, info = g["env"].step(actions[g["i"]])
            if info.get("invalid_move"):
                g["log"][-1]["invalid"] = info.get("reason", "")
            if not done:
                still.append(g)
                continue
            result = _finish(g, env_id, opponent_name, deal_seeds[g["i"] // 2])
            results[g["i"]] = result
            if on_game is not None:
                on_game(result)
        active = still
    return [r for r in results if r is not None]


def _finish(g: dict[str, Any], env_id: str, opponent_name: str, seed: int) -> GameResult:
    rewards, info = g["env"].close()
    seat = g["seat"]
    invalid_player = info.get("invalid_player")
    return GameResult(
        env_id=env_id, opponent=opponent_name, seat=seat, seed=seed, outcome=info["outcome"][seat],
        reward=float(rewards[seat]), turns=int(info.get("turns", len(g["log"]))),
        model_turns=sum(t["agent"] == "model" for t in g["log"]), invalid=invalid_player == seat,
        opponent_invalid=invalid_player == 1 - seat, reason=str(info.get("reason", "")),
        response_chars=g["chars"], response_tokens=g["tokens"], transcript=g["log"],
        opponent_reward=float(rewards[1 - seat]), deal=_deal(info, seat),
    )  # fmt: skip


def _deal(info: dict[str, Any], seat: int) -> dict[str, float]:
    """A negotiation's trades and value changes seen from `seat` (empty for other games)."""
    change = info.get("value_change")
    if "trades" not in info or not isinstance(change, dict):
        return {}
    return {"trades": float(info["trades"]), "value_change": float(change[seat]),
            "opponent_value_change": float(change[1 - seat])}  # fmt: skip


def deal_block(rs: list[GameResult]) -> dict[str, Any]:
    """Negotiation measures: the deal rate (games with a trade), the model's mean value change and its lead over
    the opponent's (the zero-sum quantity the game scores), and the share of the value created by trades that the
    model captured (its gains over both players' gains, summed over games with a trade; None when that is <= 0)."""
    from spiral.evaluation.stats import mean_interval, wilson_interval

    ds = [r.deal for r in rs if r.deal]
    if not ds:
        return {}
    n, dealt = len(ds), [d for d in ds if d["trades"] > 0]
    total = sum(d["value_change"] + d["opponent_value_change"] for d in dealt)
    change, *change_ci = mean_interval([d["value_change"] for d in ds])
    lead, *lead_ci = mean_interval([d["value_change"] - d["opponent_value_change"] for d in ds])
    return {
        "deal_rate": len(dealt) / n, "deal_ci": list(wilson_interval(len(dealt), n)),
        "mean_value_change": change, "mean_value_change_ci": change_ci,
        "mean_lead": lead, "mean_lead_ci": lead_ci,
        "value_captured": sum(d["value_change"] for d in dealt) / total if total > 0 else None,
    }  # fmt: skip


def summarize_games(results: list[GameResult]) -> dict[str, Any]:
    """Rates with Wilson 95 % intervals, mean game length and response lengths; overall and per seat."""
    from spiral.evaluation.stats import mean_interval, wilson_interval

    def block(rs: list[GameResult]) -> dict[str, Any]:
        n = len(rs)
        out: dict[str, Any] = {"games": n}
        for key, count in (
            ("win", sum(r.outcome == "win" for r in rs)),
            ("draw", sum(r.outcome == "draw" for r in rs)),
            ("loss", sum(r.outcome == "loss" for r in rs)),
            ("invalid", sum(r.invalid for r in rs)),
        ):
            out[f"{key}_rate"] = count / n if n else 0.0
            out[f"{key}_ci"] = list(wilson_interval(count, n))
        model_turns = sum(r.model_turns for r in rs)
        chars = [c for r in rs for c in r.response_chars]
        tokens = [t for r in rs for t in r.response_tokens]
        out.update({
            "opponent_invalid_rate": sum(r.opponent_invalid for r in rs) / n if n else 0.0,
            "invalid_per_move": sum(r.invalid for r in rs) / model_turns if model_turns else 0.0,
            "mean_reward": sum(r.reward for r in rs) / n if n else 0.0,
            "mean_reward_ci": list(mean_interval([r.reward for r in rs])[1:]) if n else [0.0, 0.0],
            "mean_turns": sum(r.turns for r in rs) / n if n else 0.0,
            "mean_response_chars": sum(chars) / len(chars) if chars else 0.0,
            "mean_response_tokens": sum(tokens) / len(tokens) if tokens else None,
        })  # fmt: skip
        out.update(deal_block(rs))
        return out

    return {"all": block(results), "seat0": block([r for r in results if r.seat == 0]),
            "seat1": block([r for r in results if r.seat == 1])}  # fmt: skip


def pick_transcripts(results: list[GameResult], k: int) -> list[GameResult]:
    """Up to k wins, k losses and k draws, in game order (the report shows them)."""
    picked: list[GameResult] = []
    for outcome in ("win", "loss", "draw"):
        picked += [r for r in results if r.outcome == outcome][:k]
    return picked


def metric_rows(summary: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Flat metrics `eval/<env>/<opponent>/win_rate` etc., as the trainer logs them."""
    out = {}
    for key, s in summary.items():
        env_id, opponent = key.split(" vs ")
        for name in (
            "win_rate",
            "draw_rate",
            "loss_rate",
            "invalid_rate",
            "mean_turns",
            "mean_response_chars",
        ):
            out[f"eval/{env_id}/{opponent}/{name}"] = s["all"][name]
        for name in ("deal_rate", "mean_value_change", "mean_lead", "value_captured"):  # negotiation only
            if s["all"].get(name) is not None:
                out[f"eval/{env_id}/{opponent}/{name}"] = s["all"][name]
    return out


def evaluate_games(
    model: Any,
    opponents: dict[str, dict[str, Any]],
    games: list[str],
    n: int,
    seed: int = 0,
    out: str | Path | None = None,
    transcripts: int = 2,
    concurrent: int = 128,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on every (game, opponent); `opponents[env_id][name]` is an Agent. Writes `out` files."""
    from runkit.io import atomic_write_json, atomic_write_text
    from runkit.progress import ProgressBar
    from runkit.rundir import claim_output

    summary: dict[str, Any] = {}
    all_results: list[GameResult] = []
    total = n * sum(len(opponents[g]) for g in games)
    with ProgressBar(total, "games", enabled=progress, every=max(1, n // 4)) as bar:
        for env_id in games:
            for name, opp in opponents[env_id].items():
                rs = play_games(
                    model, opp, env_id, n, seed, name, concurrent, on_game=lambda r: bar.update(1)
                )
                summary[f"{env_id} vs {name}"] = summarize_games(rs)
                all_results += rs
    if out is not None:
        out = claim_output(out)
        atomic_write_json(out / "summary.json", {"kind": "games", "n": n, "seed": seed, "results": summary})
        lines = [json.dumps({k: v for k, v in asdict(r).items() if k != "transcript"}) for r in all_results]
        atomic_write_text(out / "games.jsonl", "".join(x + "\n" for x in lines))
        picked = []
        for env_id in games:
            for name in opponents[env_id]:
                picked += pick_transcripts(
                    [r for r in all_results if (r.env_id, r.opponent) == (env_id, name)], transcripts
                )
        atomic_write_text(out / "transcripts.jsonl", "".join(json.dumps(asdict(r)) + "\n" for r in picked))
    return summary


def format_games(summary: dict[str, Any]) -> str:
    """A plain-text table: one line per (game, opponent) and seat."""
    lines = [f"{'game vs opponent':<40} {'seat':>4} {'n':>4} {'win':>6} {'95% CI':>15} {'draw':>6} {'loss':>6} "
             f"{'invalid':>7} {'turns':>5} {'chars':>6}"]  # fmt: skip
    for key, s in summary.items():
        for seat in ("all", "seat0", "seat1"):
            b = s[seat]
            if not b["games"]:
                continue
            lines.append(
                f"{key:<40} {seat.replace('seat', ''):>4} {b['games']:>4} {b['win_rate']:>6.3f} "
                f"[{b['win_ci'][0]:.3f}, {b['win_ci'][1]:.3f}] {b['draw_rate']:>6.3f} {b['loss_rate']:>6.3f} "
                f"{b['invalid_rate']:>7.3f} {b['mean_turns']:>5.1f} {b['mean_response_chars']:>6.0f}"
            )
        d = s["all"]
        if "deal_rate" in d:
            captured = "n/a" if d["value_captured"] is None else f"{d['value_captured']:.3f}"
            lines.append(
                f"  deals {d['deal_rate']:.3f} [{d['deal_ci'][0]:.3f}, {d['deal_ci'][1]:.3f}]; value change "
                f"{d['mean_value_change']:+.1f} [{d['mean_value_change_ci'][0]:+.1f}, {d['mean_value_change_ci'][1]:+.1f}]"
                f"; lead {d['mean_lead']:+.1f} [{d['mean_lead_ci'][0]:+.1f}, {d['mean_lead_ci'][1]:+.1f}]; "
                f"value captured {captured}"
            )
    return "\n".join(lines)


# ---- CLI -----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `spiral eval games`."""
    parser.add_argument(
        "--model", required=True, help="smollm2-135m-instruct, tiny, or a model/checkpoint/run folder"
    )
    parser.add_argument(
        "--games", default=DEFAULT_GAMES, help=f"comma-separated game ids (default {DEFAULT_GAMES})"
    )
    parser.add_argument(
        "--opponents", default="random,optimal", help="comma-separated agent specs (spiral play)"
    )
    parser.add_argument(
        "--n", type=int, default=512, help="games per (game, opponent), split equally between seats"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the deals, the opponents and sampling")
    parser.add_argument(
        "--temperature", type=float, default=0.6, help="sampling temperature (paper: 0.6-0.7)"
    )
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (paper: 0.9-0.95)")
    parser.add_argument("--max-new-tokens", type=int, help="response budget (default: the run's, else 256)")
    parser.add_argument(
        "--concurrent", type=int, default=128, help="games played at once (one batch per round)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per generation batch")
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on GPU, fp32 on CPU"
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads for torch (1 is fastest on a busy shared machine)"
    )
    parser.add_argument(
        "--action-mode", choices=["free", "constrained", "think"],
        help="how the model answers (default: the run's, else free): constrained scores the legal moves",
    )  # fmt: skip
    parser.add_argument(
        "--prompt-style",
        choices=["paper", "compact"],
        help="the game prompt (default: the run's, else paper)",
    )
    parser.add_argument(
        "--transcripts", type=int, default=2, help="games kept per outcome (win/loss/draw) per pair"
    )
    parser.add_argument(
        "--out", help="output folder (default RUN/eval/games for a run folder, else runs/eval/games/<model>)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def default_out(model: str, kind: str) -> Path:
    """RUN/eval/<kind> when `model` is a run folder, else runs/eval/<kind>/<model name>."""
    p = Path(model)
    if (p / "config.json").is_file() and (p / "checkpoints").is_dir():
        return p / "eval" / kind
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in (p.name or model))
    return Path("runs/eval") / kind / name


def run(args: argparse.Namespace) -> int:
    """Load the model once, build the opponents per game, play, print and save."""
    import torch

    from spiral.agents import make_agent

    if args.n < 1 or args.concurrent < 1:
        raise UserError("--n and --concurrent must be >= 1")
    games = [g.strip() for g in args.games.split(",") if g.strip()]
    specs = [o.strip() for o in args.opponents.split(",") if o.strip()]
    if not games or not specs:
        raise UserError("--games and --opponents need at least one entry each")
    from spiral.games import make

    for g in games:
        make(g)  # unknown ids fail here, before the model loads
    opponents = {g: {s: make_agent(s, g, seed=args.seed) for s in specs} for g in games}
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = args.dtype if args.dtype != "auto" else ("bf16" if torch.cuda.is_available() else "fp32")
    model = make_agent(
        args.model, games[0], seed=args.seed, temperature=args.temperature, top_p=args.top_p,
        max_new_tokens=args.max_new_tokens, dtype=dtype, batch_size=args.batch_size,
        action_mode=args.action_mode, prompt_style=args.prompt_style,
    )  # fmt: skip
    out = Path(args.out) if args.out else default_out(args.model, "games")
    summary = evaluate_games(
        model, opponents, games, args.n, args.seed, out, args.transcripts, args.concurrent
    )
    print(json.dumps(summary, indent=2) if args.json else format_games(summary))
    print(f"saved: {out}/summary.json, games.jsonl, transcripts.jsonl", flush=True)
    return 0
