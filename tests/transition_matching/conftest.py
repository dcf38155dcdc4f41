"""Shared fixtures: one torch thread and a private classifier cache."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path_factory):
    torch.set_num_threads(1)
    monkeypatch.setenv("TM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tm_cache"))
