"""Moved: the collector and its records are `spiral.training.rollout`; the samplers are `spiral.generation`
(`Generator` here is `spiral.generation.hf.HFGenerator`).

These names stay importable from here for one release; import them from their new homes.
"""

from spiral.generation.base import Generation, Sampling, sample_tokens, stop_on_rule
from spiral.generation.hf import HFGenerator as Generator
from spiral.training.rollout import GameRecord, Rollout, RolloutCollector, Turn, rollout_stats

__all__ = ["GameRecord", "Generation", "Generator", "Rollout", "RolloutCollector", "Sampling", "Turn",
           "rollout_stats", "sample_tokens", "stop_on_rule"]  # fmt: skip
