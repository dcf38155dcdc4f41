"""Moved: the fast engine is `spiral.generation.fast`, `make_generator` is `spiral.generation`.

These names stay importable from here for one release; import them from their new homes.
"""

from spiral.generation import GENERATORS, make_generator
from spiral.generation.base import sample_cdf
from spiral.generation.fast import FastGenerator, can_prepack, linear, pack_linear

__all__ = [
    "GENERATORS",
    "FastGenerator",
    "can_prepack",
    "linear",
    "make_generator",
    "pack_linear",
    "sample_cdf",
]
