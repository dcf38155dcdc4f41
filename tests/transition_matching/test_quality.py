"""Contract (h): each method, trained briefly on 8 gaussians, gets far closer to the data than untrained."""

import time

import pytest

from runkit.rundir import create_run_dir
from transition_matching.config import make_config, resolve
from transition_matching.evaluation import evaluate
from transition_matching.runs import load_run, sample_options
from transition_matching.trainer import config_dict, train

SETTINGS = {
    "fm": {"steps": 500},
    "dtm": {"steps": 500},
    "artm": {"steps": 500, "T": 2},
    "fhtm": {"steps": 500, "T": 2},
}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(SETTINGS))
def test_brief_training_beats_the_untrained_model(tmp_path, method):
    base = {"width": 64, "depth": 2, "head_width": 64, "head_depth": 2, "batch_size": 128, "lr": 2e-3}
    cfg = resolve(
        make_config(method=method, data="8gaussians", n_points=20_000, **base, **SETTINGS[method]), 1
    )
    run = create_run_dir(tmp_path / "r", config_dict(cfg), kind="tm")
    untrained = train(cfg, run, stop_at=1, progress=False)  # a checkpoint after one tiny step (EMA ~ init)
    assert untrained.step == 1
    loaded = load_run(run.path)
    w2_before = evaluate(loaded, 1000, sample_options(loaded, head_steps=4))["w2"]
    t0 = time.time()
    train(cfg, run, resume=True, progress=False)
    loaded = load_run(run.path)
    w2_after = evaluate(loaded, 1000, sample_options(loaded, head_steps=4))["w2"]
    print(
        f"{method}: W2 untrained {w2_before:.3f} -> trained {w2_after:.3f} ({time.time() - t0:.1f} s training)"
    )
    assert w2_after < 0.4 * w2_before and w2_after < 1.6
