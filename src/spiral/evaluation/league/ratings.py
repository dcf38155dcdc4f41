"""Ratings of league players with `openskill` (Weng-Lin Bayesian ratings): Plackett-Luce or Thurstone-Mosteller.

Every player starts at mu 25, sigma 25/3 (openskill's defaults). Each game updates the two ratings once, in
the order the league hands the games over (a fixed order, so the same games give the same ratings). `tau`, the
skill drift added before every update, is 0 by default: a checkpoint or a fixed agent does not change between
games, and with drift sigma would never shrink below a floor however many games are played.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

RATING_MODELS = ("plackett-luce", "thurstone-mosteller")
RANKS = {"win": [0, 1], "draw": [0, 0], "loss": [1, 0]}  # openskill ranks: lower is better
Z95 = 1.96


def _model_class(name: str):
    from openskill.models import PlackettLuce, ThurstoneMostellerFull

    classes = {"plackett-luce": PlackettLuce, "thurstone-mosteller": ThurstoneMostellerFull}
    if name not in classes:
        raise ValueError(f"rating model must be one of {', '.join(RATING_MODELS)}, got {name!r}")
    return classes[name]


class Ratings:
    """One openskill rating per player label, updated game by game."""

    def __init__(self, labels: Iterable[str], model: str = "plackett-luce", tau: float = 0.0) -> None:
        self.model_name = model
        self.model = _model_class(model)(tau=tau)
        self.ratings = {label: self.model.rating(name=label) for label in labels}
        self.games = dict.fromkeys(self.ratings, 0)

    def add(self, a: str, b: str, outcome: str, games: int = 1) -> None:
        """One result of `a` against `b` (over `games` games); `outcome` (win / draw / loss) is a's."""
        (ra,), (rb,) = self.model.rate([[self.ratings[a]], [self.ratings[b]]], ranks=RANKS[outcome])
        self.ratings[a], self.ratings[b] = ra, rb
        self.games[a] += games
        self.games[b] += games

    def win_probability(self, a: str, b: str) -> float:
        """The model's probability that `a` beats `b`."""
        return float(self.model.predict_win([[self.ratings[a]], [self.ratings[b]]])[0])

    def uncertainty(self, a: str, b: str) -> float:
        """How much a game of the pair is worth playing: the joint rating spread sqrt(sigma_a^2 + sigma_b^2)
        times 4 p (1 - p), p the predicted win probability (largest for close, poorly known pairs)."""
        p = self.win_probability(a, b)
        sa, sb = self.ratings[a].sigma, self.ratings[b].sigma
        return math.sqrt(sa * sa + sb * sb) * 4 * p * (1 - p)

    def table(self) -> dict[str, dict[str, Any]]:
        """label -> mu, sigma, the 95 % interval mu +- 1.96 sigma, the ordinal mu - 3 sigma, games."""
        out = {}
        for label, r in self.ratings.items():
            out[label] = {
                "mu": r.mu,
                "sigma": r.sigma,
                "ci": [r.mu - Z95 * r.sigma, r.mu + Z95 * r.sigma],
                "ordinal": r.mu - 3 * r.sigma,
                "games": self.games[label],
            }
        return out

    def ranking(self) -> list[str]:
        """Labels from the highest mu down (ties by label)."""
        return sorted(self.ratings, key=lambda k: (-self.ratings[k].mu, k))
