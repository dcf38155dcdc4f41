"""Role-conditioned advantage estimation (RAE) and the raw-return ablation.

For each (game id, role) a baseline b starts at 0. After a finished game with return R for that role:
  order "code"  (the public code, the default): A = R - b;  then b <- d*b + (1-d)*R
  order "paper" (the paper's text):             b <- d*b + (1-d)*R;  then A = R - b
Every turn of that role in that game gets A (discount 1). The estimator sees only (game id, role, return).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


def rae_update(baseline: float, ret: float, decay: float = 0.95, order: str = "code") -> tuple[float, float]:
    """One RAE step: (advantage, new baseline) for return `ret` against `baseline`."""
    new_baseline = decay * baseline + (1.0 - decay) * ret
    if order == "code":
        return ret - baseline, new_baseline
    if order == "paper":
        return ret - new_baseline, new_baseline
    raise ValueError(f"order must be 'code' or 'paper', got {order!r}")


@dataclass
class AdvantageEstimator:
    """Per-(game, role) EMA baselines (`rae`) or raw returns (`none`); baselines go into checkpoints."""

    estimator: str = "rae"
    decay: float = 0.95
    order: str = "code"
    baselines: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def key(env_id: str, role: int) -> str:
        """Baseline key of a game id and a role."""
        return f"{env_id}/{role}"

    def advantage(self, env_id: str, role: int, ret: float) -> float:
        """Advantage of one finished game's return for `role`; updates that role's baseline."""
        if self.estimator == "none":
            return float(ret)
        k = self.key(env_id, role)
        adv, self.baselines[k] = rae_update(self.baselines.get(k, 0.0), float(ret), self.decay, self.order)
        return adv

    def assign(self, games: Iterable) -> None:
        """Set `advantage` on every turn of finished games (spiral.rollout.GameRecord), in finishing order."""
        for g in games:
            per_role = {r: self.advantage(g.env_id, r, g.returns.get(r, 0.0)) for r in g.policy_roles}
            for t in g.turns:
                t.advantage = per_role[t.role]

    def state_dict(self) -> dict:
        """Baselines (JSON-friendly) for a checkpoint."""
        return {
            "estimator": self.estimator,
            "decay": self.decay,
            "order": self.order,
            "baselines": dict(self.baselines),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the baselines of a checkpoint."""
        self.baselines = {str(k): float(v) for k, v in state.get("baselines", {}).items()}


def drop_zero(turns: list, format_bonus: float = 0.0) -> list:
    """Add the optional format bonus, then drop turns whose advantage is exactly 0 (they carry no gradient)."""
    for t in turns:
        if format_bonus and t.strict_ok:
            t.advantage += format_bonus
    return [t for t in turns if t.advantage != 0.0]
