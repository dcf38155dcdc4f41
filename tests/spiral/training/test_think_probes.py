"""The think-mode diagnostics of benchmarks/: the gradient split by term (think_grad_parts.py) adds up to the
learner's own gradient, and the supervised probe through sampled thoughts (kuhn_think_probe.py) runs and
writes its table, on a tiny random model."""

from __future__ import annotations

import torch

from spiral.config import load_settings
from spiral.training import factories
from spiral.training.advantage import AdvantageEstimator, drop_zero

THINK = ["rollout.action_mode=think", "rollout.think_tokens=6", "learner.kl_coef=0.0", "run.threads=1"]


def test_the_terms_add_up_to_the_learners_gradient(bench_script, tmp_path):
    gp = bench_script("think_grad_parts")
    s = load_settings(
        "tiny-test", [*THINK, "learner.grad_clip=1e9", "learner.entropy_coef=0.3", "learner.ppo_epochs=1"]
    )
    tok, model, learner = factories.build_learner(s, tmp_path, None)
    policy = factories.make_policy(s, model, tok, 0)
    collector = factories.make_collector(s, policy, 0)
    est = AdvantageEstimator("rae", 0.95, "code", s.advantage.key_by, "none", 0)
    rollout = collector.collect(8)
    est.assign(rollout.games)
    turns = drop_zero(rollout.turns)
    assert turns and all(t.thought_len >= 0 for t in turns)
    model.train()
    chunks = gp.part_losses(learner, turns)
    parts = {k: gp.gradient(learner, [c[k] for c in chunks]) for k in gp.PARTS}
    assert all(float(g.norm()) > 0 for g in parts.values())
    got = []
    learner.optimizer.step = lambda *a, **k: got.append(torch.cat([p.grad.flatten() for p in learner.params]))
    learner.update(turns, 0)
    want = sum(parts.values())
    assert len(got) == 1
    assert torch.allclose(got[0], want, rtol=1e-3, atol=1e-6)
    assert not torch.allclose(
        got[0], parts["thought"] + parts["move"], rtol=1e-3, atol=1e-6
    )  # entropy counts


def test_the_supervised_think_probe_writes_its_table(bench_script, tmp_path):
    probe = bench_script("kuhn_think_probe")
    out = tmp_path / "probe.md"
    args = ["--preset", "tiny-test", "--steps", "2", "--every", "1", "--thoughts", "2", "--samples", "2",
            "--think-tokens", "4", "--out", str(out)]  # fmt: skip
    assert probe.main(args) == 0
    rows = [x for x in out.read_text().splitlines() if x.startswith("| ") and x[2].isdigit()]
    assert [r.split(" | ")[0] for r in rows] == ["| 0", "| 1", "| 2"]
    assert "--thoughts 2" in out.read_text()
    assert probe.main([*args[:-2], "--no-thought", "--out", str(out)]) == 0
    assert "no thought (constrained control)" in out.read_text()


def test_the_probes_refuse_bad_arguments(bench_script, capsys):
    assert bench_script("kuhn_think_probe").main(["--steps", "0"]) == 2
    assert bench_script("think_grad_parts").main(["--preset", "tiny-test"]) == 2
    err = capsys.readouterr().err
    assert "--steps" in err and "not a think-mode preset" in err
