"""Moved: the training loop is `spiral.training.trainer`, the run's factories `spiral.training.factories`.

These names stay importable from here for one release; import them from their new homes.
"""

from spiral.phases import format_phases, phase_summary
from spiral.training.factories import check_settings, make_collector, make_policy
from spiral.training.trainer import Trainer

__all__ = ["Trainer", "check_settings", "format_phases", "make_collector", "make_policy", "phase_summary"]
