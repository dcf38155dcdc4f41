"""`tm demo`: train DTM and FM briefly on 8 gaussians and digits, evaluate, plot, write reports."""

from transition_matching.demo import add_arguments, run

__all__ = ["add_arguments", "run"]
