"""The fast engine: a hand-written Llama forward with static KV caches, shared prefixes and native kernels."""

from spiral.generation.fast.engine import FastGenerator
from spiral.generation.fast.weights import can_prepack, linear, pack_linear

__all__ = ["FastGenerator", "can_prepack", "linear", "pack_linear"]
