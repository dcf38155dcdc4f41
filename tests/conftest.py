"""Test environment: offline hubs, a temp matplotlib config dir, and no writes outside temp dirs."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="mpl-"))
os.environ.setdefault("MPLBACKEND", "Agg")
# The fast engine's native kernels are compiled once per machine into a cache kept under the temp dir.
os.environ.setdefault("SPIRAL_NATIVE_CACHE", os.path.join(tempfile.gettempdir(), "spiral-native-test-cache"))
