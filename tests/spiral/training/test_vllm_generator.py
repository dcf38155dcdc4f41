"""The vLLM generator fails with one clear error where it cannot run, and CPU paths never import vLLM."""

from __future__ import annotations

import sys

import pytest
import torch

from runkit.errors import UserError


def test_vllm_generator_needs_cuda(tiny, monkeypatch):
    from spiral.generation import make_generator
    from spiral.generation.vllm import VLLMGenerator

    model, tok = tiny
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this CPU machine, also on a GPU runner
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        VLLMGenerator(model, [tok.eos_token_id], tok.pad_token_id, torch.float32, 8, 0, True)
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        make_generator("vllm", model, [tok.eos_token_id], tok.pad_token_id, torch.float32, 8, 0, True)
    assert "vllm" not in sys.modules


def test_vllm_generator_needs_vllm(tiny, monkeypatch):
    from spiral.generation.vllm import VLLMGenerator

    model, tok = tiny
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the constructor sets it; keep it local
    monkeypatch.setitem(sys.modules, "vllm", None)  # an environment without the `gpu` extra
    with pytest.raises(UserError, match=r"needs vLLM: pip install '\.\[gpu\]'"):
        VLLMGenerator(model, [tok.eos_token_id], tok.pad_token_id, torch.bfloat16, 8, 0, True)
