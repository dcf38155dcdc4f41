"""Test environment: offline hubs, a temp matplotlib config dir, and no writes outside temp dirs."""

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="mpl-"))
os.environ.setdefault("MPLBACKEND", "Agg")
# The fast engine's native kernels are compiled once per machine into a cache kept under the temp dir.
os.environ.setdefault("SPIRAL_NATIVE_CACHE", os.path.join(tempfile.gettempdir(), "spiral-native-test-cache"))


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def bench_script():
    """Import a script of benchmarks/ (not a package) by name: `bench_script("paper_cost")`; each once per session,
    registered in sys.modules while the tests run (dataclasses look their module up)."""
    loaded: dict = {}

    def load(name: str):
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded[name]

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
