"""Fixtures of the training tests: a tiny random Llama with the SmolLM2 tokenizer, and a 7-token one.

The SmolLM2 tokenizer is read from the user cache when an earlier run converted it; otherwise it is converted
from the installed GGUF into a temporary cache (~10 s once per session), so tests write only to temp dirs.
"""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory):
    """Use the user's converted tokenizer when present, else a session temp cache."""
    from spiral.model import cache_dir

    old = os.environ.get("SPIRAL_CACHE")
    if not (cache_dir() / "smollm2-135m-instruct-tokenizer" / "tokenizer.json").is_file():
        os.environ["SPIRAL_CACHE"] = str(tmp_path_factory.mktemp("spiral-cache"))
    yield
    if old is None:
        os.environ.pop("SPIRAL_CACHE", None)
    else:
        os.environ["SPIRAL_CACHE"] = old


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Two cores are shared; one torch thread is faster and steadier than two under contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def smol_tokenizer():
    """The SmolLM2 tokenizer (chat template, 49k tokens)."""
    from spiral.model import load_tokenizer

    return load_tokenizer("tiny")


@pytest.fixture()
def tiny(smol_tokenizer):
    """A fresh tiny random Llama with the SmolLM2 tokenizer: (model, tokenizer)."""
    from spiral.model import load_model

    return load_model("tiny", smol_tokenizer), smol_tokenizer


@pytest.fixture()
def letters():
    """A fresh tiny random Llama over {A, B, C, D} plus <pad> <unk> <eos>: (model, tokenizer)."""
    from spiral.model import load_model, load_tokenizer

    tok = load_tokenizer("tiny:ABCD")
    return load_model("tiny:ABCD", tok), tok
