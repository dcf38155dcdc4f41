"""The four methods behind one interface: loss(model, X_T, labels, generator) and sample(...)."""

from __future__ import annotations

from runkit.errors import UserError
from transition_matching.methods.artm import ARTM
from transition_matching.methods.base import (
    LossOutput,
    MethodConfig,
    SampleOptions,
    SampleResult,
    TMModel,
)
from transition_matching.methods.dtm import DTM
from transition_matching.methods.fhtm import FHTM
from transition_matching.methods.fm import FM

METHODS = {"fm": FM, "dtm": DTM, "artm": ARTM, "fhtm": FHTM}

__all__ = [
    "ARTM", "DTM", "FHTM", "FM", "METHODS", "LossOutput", "MethodConfig", "SampleOptions", "SampleResult",
    "TMModel", "build_method",
]  # fmt: skip


def build_method(cfg: MethodConfig):
    """The method object named by cfg.name."""
    if cfg.name not in METHODS:
        raise UserError(f"unknown method {cfg.name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[cfg.name](cfg)
