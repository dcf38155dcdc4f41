"""SPIRAL: self-play on zero-sum text games with role-conditioned advantage estimation."""

__version__ = "0.1.0"
