"""Moved: `VLLMGenerator` is `spiral.generation.vllm.VLLMGenerator` (this name stays for one release)."""

from spiral.generation.vllm import VLLMGenerator

__all__ = ["VLLMGenerator"]
