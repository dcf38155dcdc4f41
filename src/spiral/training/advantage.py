"""Role-conditioned advantage estimation (RAE) and the raw-return ablation.

For each (game id, role) a baseline b starts at 0. After a finished game with return R for that role:
  order "code"  (the public code, the default): A = R - b;  then b <- d*b + (1-d)*R
  order "paper" (the paper's text):             b <- d*b + (1-d)*R;  then A = R - b
Every turn of that role in that game gets A (discount 1). The estimator sees only (game id, role, return).

`key = "state"` (an extension, not the paper's) keeps one such baseline per (game id, role, prompt) instead:
each turn's advantage is its game's return minus the EMA of returns seen from that same prompt (a new
prompt starts from its role's baseline, which is updated too). Where prompts repeat, as the 12 information
sets of one-round Kuhn Poker do, this removes the luck of the deal from the advantage: with a role baseline a
King's moves are all pushed up and a Jack's all pushed down, a component that a shared network (an LM)
learns as "play more like this everywhere"; with a state baseline only the difference between moves remains.

`control = "random_sign"` (the transfer control, not the paper's) multiplies each finished game's return per
role by an independent random sign before any of the above: the model trains on its own game text with the
same magnitudes and recipe, but the sign carries no information about the game. Draw i of the stream is a
hash of (seed, i), and the draw count is checkpointed, so a resumed run continues the same stream.
"""

from __future__ import annotations

import hashlib
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
    key_by: str = "role"  # role (the paper's RAE) or state (one baseline per prompt)
    control: str = "none"  # none or random_sign (the transfer control)
    seed: int = 0
    baselines: dict[str, float] = field(default_factory=dict)
    draws: int = 0  # random signs drawn so far (random_sign control)

    def _sign(self) -> float:
        """The next random sign of the control's stream."""
        digest = hashlib.sha256(f"{self.seed}:{self.draws}".encode()).digest()
        self.draws += 1
        return 1.0 if digest[0] & 1 else -1.0

    def _returns(self, g) -> dict[int, float]:
        """A game's return per policy role, sign-randomised under the random_sign control."""
        rets = {r: float(g.returns.get(r, 0.0)) for r in g.policy_roles}
        if self.control == "random_sign":
            rets = {r: v * self._sign() for r, v in rets.items()}
        return rets

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

    def state_advantage(self, env_id: str, role: int, prompt_ids, ret: float) -> float:
        """Advantage of one turn against its prompt's baseline (started from the role's); updates both."""
        role_key = self.key(env_id, role)
        k = f"{role_key}#{hashlib.sha1(repr(list(prompt_ids)).encode()).hexdigest()[:16]}"
        start = self.baselines.get(k, self.baselines.get(role_key, 0.0))
        adv, self.baselines[k] = rae_update(start, float(ret), self.decay, self.order)
        return adv

    def assign(self, games: Iterable) -> None:
        """Set `advantage` on every turn of finished games (spiral.training.rollout.GameRecord), in finishing order."""
        if self.estimator == "rae" and self.key_by == "state":
            for g in games:
                rets = self._returns(g)
                for t in g.turns:
                    t.advantage = self.state_advantage(g.env_id, t.role, t.prompt_ids, rets.get(t.role, 0.0))
                for r in g.policy_roles:
                    self.advantage(g.env_id, r, rets[r])  # the role baseline new prompts start from
            return
        for g in games:
            rets = self._returns(g)
            per_role = {r: self.advantage(g.env_id, r, rets[r]) for r in g.policy_roles}
            for t in g.turns:
                t.advantage = per_role[t.role]

    def state_dict(self) -> dict:
        """Baselines (JSON-friendly) for a checkpoint."""
        return {
            "estimator": self.estimator,
            "decay": self.decay,
            "order": self.order,
            "key_by": self.key_by,
            "baselines": dict(self.baselines),
            "control": self.control,
            "draws": self.draws,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the baselines of a checkpoint."""
        self.baselines = {str(k): float(v) for k, v in state.get("baselines", {}).items()}
        self.draws = int(state.get("draws", 0))


def drop_zero(turns: list, format_bonus: float = 0.0, keep: bool = False) -> list:
    """Add the optional format bonus, then drop turns whose advantage is exactly 0 (they carry no policy
    gradient); `keep` trains them too, for their entropy and KL terms."""
    for t in turns:
        if format_bonus and t.strict_ok:
            t.advantage += format_bonus
    return list(turns) if keep else [t for t in turns if t.advantage != 0.0]
