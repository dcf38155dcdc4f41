"""Transition Matching: DTM, ARTM, FHTM and a flow-matching baseline with a shared backbone and flow head."""

__version__ = "0.1.0"
