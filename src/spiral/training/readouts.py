"""The in-run Kuhn readout of a training run (one-round KuhnPoker-v2 only): the policy read out by the action
mode's own readout, its OpenSpiel exploitability, that of the average policy (reach-weighted over every readout
of the run so far), appended atomically to eval/exploitability.jsonl.

  constrained  exact: the legal moves' renormalised probabilities (exact_readout)
  think        M sampled thoughts per information set, moves exact after each, averaged, with a bootstrap
               interval and the thought diagnostics; every sampled thought is kept (spiral eval patterns reads them)
  free         M sampled answers per information set, the move parsed from each (sampled_readout)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from runkit.io import atomic_write_text
from spiral.training import factories


def take_readout(s, policy, model, step: int, readouts: list[dict], folder: Path) -> tuple[dict, list[dict]]:
    """(metrics to log, the run's readouts with this one appended; rows from `step` on are replaced)."""
    from spiral.agents.kuhn import average_policy, exploitability
    from spiral.evaluation.exploitability import exact_readout

    t0 = time.perf_counter()
    mode, temp, m = s.rollout.action_mode, s.rollout.temperature, s.eval.think_samples
    if mode == "think":
        from spiral.evaluation.exploitability import think_readout

        r = think_readout(policy, temp, m, s.run.seed, keep_examples=m)
    elif mode == "free":
        from spiral.evaluation.exploitability import sampled_readout

        r = sampled_readout(policy, temp, s.rollout.max_new_tokens, m, s.rollout.parse_mode, s.run.seed)
    else:
        r = exact_readout(policy, model, temp, factories.learner_dtype(s))
    seconds = time.perf_counter() - t0
    readouts = [x for x in readouts if x["step"] < step]
    avg = average_policy([x["probs"] for x in readouts] + [r.probs])
    row = {"step": step, "exploitability": r.exploitability, "avg_exploitability": exploitability(avg),
           "seconds": seconds, "probs": r.probs, "legal_mass": r.legal_mass}  # fmt: skip
    extra = {}
    if mode != "constrained":  # sampled: thoughts (moves exact after them), or free-form answers parsed
        row.update(ci_low=r.ci_low, ci_high=r.ci_high, diagnostics=r.diagnostics, examples=r.examples)
        extra = {"eval/exploitability_lo": r.ci_low, "eval/exploitability_hi": r.ci_high,
                 **{f"think/{k}": v for k, v in r.diagnostics.items()}}  # fmt: skip
    readouts.append(row)
    folder.mkdir(exist_ok=True)
    atomic_write_text(folder / "exploitability.jsonl", "".join(json.dumps(x) + "\n" for x in readouts))
    mass = sum(r.legal_mass.values()) / len(r.legal_mass)
    metrics = {"eval/exploitability": r.exploitability, "eval/avg_exploitability": row["avg_exploitability"],
               "eval/legal_mass": mass, "eval/readout_seconds": seconds, **extra}  # fmt: skip
    return metrics, readouts
