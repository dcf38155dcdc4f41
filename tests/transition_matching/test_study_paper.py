"""The paper-regime study (--paper): its grid, equal compute, quality-vs-steps curves, floors, the independent
classifier, sample grids, the time estimate, and a tiny real run that resumes without training or calibrating
again."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from transition_matching.study import budget, convergence, page, plan, quality, workers
from transition_matching.study.runner import run_study

TOY = {"width": 16, "depth": 1, "head_width": 16, "head_depth": 1, "batch_size": 32, "lr": 1e-3, "warmup": 2,
       "n_points": 2000}  # fmt: skip
DIGITS = {"patch": 4, "backbone": "transformer", "width": 16, "depth": 1, "heads": 2, "head_width": 16,
          "head_depth": 1, "batch_size": 16, "lr": 1e-3, "warmup": 2}  # fmt: skip
TINY_PAPER = {
    **plan.PAPER_COMMON, "seeds": (0, 1), "datasets": ("checkerboard", "digits"), "target_min": 1,
    "data_specs": {"checkerboard": {"train": TOY, "cfg": 1.0, "metrics": ("w2", "energy")},
                   "digits": {"train": DIGITS, "cfg": 2.0, "metrics": plan.IMAGE_METRICS}},
    "only": {"digits": {"seeds": (0,), "methods": ("fm", "dtm")}},
    "steps": {"checkerboard": 6, "digits": 4}, "n_eval": {"checkerboard": 48, "digits": 30},
    "fm_steps": (2, 4), "dtm": [(2, 1), (2, 2)], "ar_T": (1,), "ar_head_steps": (1,),
    "curve": {"points": 2, "n": {"checkerboard": 32, "digits": 20}, "fm": 2, "dtm": (2, 1)},
    "grid": {"seed": 0, "per_class": 2, "configs": (("fm", 2, 1), ("dtm", 2, 2))},
}  # fmt: skip


# ----------------------------------------------------------------------------------------- the plan


def test_paper_grid_and_regime():
    paper = plan.MODES["paper"]
    assert plan.default_datasets(paper) == ("checkerboard", "8gaussians", "digits", "mnist")
    cells = plan.plan_cells(plan.default_datasets(paper), paper["seeds"], paper, methods=paper["methods"])
    assert len(cells) == 3 * 3 + 1 and all([sp["name"] for sp in v] == ["fm", "dtm"] for v in cells.values())
    assert ("mnist", 1) not in cells  # the image showcase: one seed
    assert plan.sampling_grid(paper, "fm", "fm", 0) == [(k, 1) for k in (4, 8, 16, 32, 64, 128, 256)]
    assert plan.sampling_grid(paper, "dtm", "dtm", 16) == [(T, S) for T in (4, 8, 16, 32) for S in (1, 4, 16)]
    assert (
        plan.n_eval_of(paper, "8gaussians") == 2000 and plan.n_eval_of(plan.MODES["full"], "digits") == 1000
    )
    with_ar = plan.plan_cells(["digits", "mnist"], (0, 1, 2), paper, methods=plan.METHODS)
    assert [sp["name"] for sp in with_ar[("digits", 0)]] == ["fm", "dtm", "artm1", "artm2", "artm3", "fhtm1",
                                                               "fhtm2", "fhtm3"]  # fmt: skip
    assert [sp["name"] for sp in with_ar[("digits", 1)]] == ["fm", "dtm"]  # ARTM/FHTM: the first seed
    assert [sp["name"] for sp in with_ar[("mnist", 0)]] == ["fm", "dtm"] and ("mnist", 2) not in with_ar
    long = plan.MODES["paper_long"]  # the same grid at 4x the training compute, checkerboard and digits
    assert plan.default_datasets(long) == ("checkerboard", "digits") and long["dtm"] == paper["dtm"]
    assert all(long["steps"][d] == 4 * paper["steps"][d] for d in ("checkerboard", "digits"))
    assert not any(sp["name"] == "fm-eqtime" for v in with_ar.values() for sp in v)  # equal compute instead
    for d, preset in plan.PAPER_PRESETS.items():  # the presets are the study's settings
        from transition_matching.config import load_preset

        assert paper["steps"][d] == load_preset(preset)["steps"]
        assert plan.DATA_PAPER[d]["train"]["width"] == load_preset(preset)["width"]


def test_paper_modes_are_resumable_records_of_their_own():
    assert plan.suffix_of("paper") == "_paper" and plan.suffix_of("paper_quick") == "_paper_quick"
    a, b = (
        plan.cell_settings(plan.MODES["paper"], "digits"),
        plan.cell_settings(plan.MODES["paper_quick"], "digits"),
    )
    assert a != b and a["equal_compute"] and a["curve"]["points"] == 8 and a["n_eval"] == 600


# ----------------------------------------------------------------------------------------- equal compute


def test_equal_compute_steps():
    sec = {"fm": 0.10, "dtm": 0.11, "fhtm3": 0.35}
    assert budget.equal_compute_steps(1000, sec, "fm") == 1000
    assert budget.equal_compute_steps(1000, sec, "dtm") == 910  # 1000 x 0.10 / 0.11 = 909 -> 910
    assert budget.equal_compute_steps(1000, sec, "fhtm3") == 290
    assert budget.equal_compute_steps(20, {"fm": 0.1, "x": 1.0}, "x") == 10  # at least 10
    todo = {("d", 0): [{"name": "fm"}, {"name": "dtm"}], ("e", 0): [{"name": "dtm"}]}
    mode = {"steps": {"d": 1000, "e": 50}}
    got = budget.training_steps(mode, todo, {"d": {"step_seconds": sec}})
    assert got == {("d", "fm"): 1000, ("d", "dtm"): 910, ("e", "dtm"): 50}  # no calibration: the budget


def test_calibration_times_fm_with_every_new_model_and_scales_to_the_stored_fm(monkeypatch, tmp_path):
    """A later session (here twice as slow) adds models: their seconds per step keep their ratio to FM's in that
    session, on the scale of the stored FM; stored models are not timed again."""
    from transition_matching import cost

    sessions = iter([[0.2, 0.3], [0.4, 0.4]])  # seconds of 2 steps: (fm, dtm), then (fm, artm1)

    def fake(fns, repeats, *a):
        return [1e-3, 1e-4] if fns[0].__name__ == "run_backbone" else next(sessions)  # pass cost, or steps

    monkeypatch.setattr(cost, "fastest", fake)
    cal = budget.calibrate(tmp_path, "checkerboard", TINY_PAPER, ["fm", "dtm"])
    assert cal["step_seconds"] == pytest.approx({"fm": 0.1, "dtm": 0.15})
    assert cal["step_flops"]["dtm"] > cal["step_flops"]["fm"] > 0 and cal["pass"]["flop_ratio"] > 0
    cal = budget.calibrate(tmp_path, "checkerboard", TINY_PAPER, ["fm", "dtm", "artm1"])
    assert cal["step_seconds"] == pytest.approx({"fm": 0.1, "dtm": 0.15, "artm1": 0.1})
    stored = json.loads(budget.calibration_path(tmp_path, "checkerboard").read_text())
    assert stored["step_seconds"]["artm1"] == pytest.approx(0.1)
    sessions = iter([[0.5]])  # other networks for the data set: measured afresh
    toy = {**TINY_PAPER["data_specs"]["checkerboard"], "train": {**TOY, "width": 24}}
    wider = {**TINY_PAPER, "data_specs": {"checkerboard": toy}}
    assert budget.calibrate(tmp_path, "checkerboard", wider, ["fm"])["step_seconds"] == {"fm": 0.25}


def test_estimate_adds_training_curves_sampling_and_metrics():
    cal = {"n_tokens": 4, "step_seconds": {"fm": 0.1, "dtm": 0.12},
           "pass": {"backbone_seconds": 1e-4, "head_seconds": 1e-5}}  # fmt: skip
    mode = TINY_PAPER
    todo = {("digits", 0): [{"name": "fm", "method": "fm"}, {"name": "dtm", "method": "dtm"}]}
    steps = {("digits", "fm"): 4, ("digits", "dtm"): 4}
    fm = budget.cell_estimate(mode, "digits", todo[("digits", 0)][0], 4, cal)
    assert fm["train"] == pytest.approx(0.4)
    per_sample = 2 * 4 * 1e-4  # one backbone pass over 4 tokens, of the batch that guidance doubles
    assert fm["sample"] == pytest.approx(30 * per_sample * (2 + 4))
    assert fm["curve"] == pytest.approx(2 * (20 * per_sample * 2 + 0.3 * (20 / 2000) ** 2))
    dtm = budget.cell_estimate(mode, "digits", todo[("digits", 0)][1], 4, cal)
    assert dtm["sample"] == pytest.approx(30 * (per_sample * (2 + 2) + 2 * 4 * 1e-5 * (2 + 4)))
    toy = budget.cell_estimate(mode, "checkerboard", todo[("digits", 0)][0], 4, cal)  # no guidance on 2D
    assert toy["sample"] == pytest.approx(48 * 4 * 1e-4 * (2 + 4))
    est = budget.estimate(mode, todo, steps, {"digits": cal}, jobs=2)
    assert est["total"] == pytest.approx(sum(fm.values()) + sum(dtm.values()))
    assert est["wall"] >= est["total"] / 2  # one (data, seed) chain cannot be split further than its parts
    text = budget.describe_estimate(est, 60)
    assert "worker-minutes" in text and "fits the 60-minute target" in text and "expect" not in text
    assert budget.load_factor(0.0, 2, 2) == 1.0 and budget.load_factor(0.5, 1, 2) == 1.0
    assert budget.load_factor(4.0, 2, 2) == 3.0
    busy = dict(est, wall=600.0)
    assert "load average before this run) on 2: expect about 30 min" in budget.describe_estimate(
        busy, 60, 4.0, 2
    )


# ----------------------------------------------------------------------------------------- curves and floors


def test_curve_spec_and_flatness():
    spec = quality.curve_spec(TINY_PAPER, "digits", "dtm", 7)
    assert spec == {"every": 4, "n": 20, "steps": 2, "head_steps": 1, "metrics": ("cfid", "w2"), "cfg": 2.0}
    assert quality.curve_spec(TINY_PAPER, "checkerboard", "fm", 6)["metrics"] == ("w2", "energy")
    assert quality.curve_spec(TINY_PAPER, "digits", "artm1", 7) is None
    assert quality.curve_spec(plan.MODES["full"], "digits", "fm", 7) is None
    assert quality.flatness([(100, 2.0), (200, 1.5), (300, 1.0), (400, 0.99)]) == pytest.approx(-0.01)
    assert quality.flatness([(100, 2.0), (400, 1.0)]) == pytest.approx(-0.5)
    assert quality.flatness([(100, 2.0)]) is None


def test_trainer_evaluation_hook_does_not_change_the_run(tmp_path):
    from runkit.rundir import create_run_dir
    from transition_matching.config import make_config, resolve
    from transition_matching.trainer import config_dict, load_training_data, train

    cfg = make_config(method="dtm", data="checkerboard", steps=7, ckpt_every=7, **TOY)
    data = load_training_data(cfg)
    cfg = resolve(cfg, data.n_tokens)
    seen = []

    def hook(step, method, ema):
        assert not torch.is_grad_enabled()
        seen.append(step)
        method.sample(ema, (8, 1, 2), None, workers_options(), torch.Generator().manual_seed(0))

    from runkit.checkpoint import load_checkpoint

    states = []
    for name, kw in (("plain", {}), ("hooked", {"evaluate_every": 3, "on_evaluate": hook})):
        run = create_run_dir(tmp_path / name, config_dict(cfg), kind="tm")
        res = train(cfg, run, data=data, progress=False, **kw)
        states.append(load_checkpoint(run.latest_checkpoint()[1]).state)
    assert seen == [3, 6, 7] and res.eval_seconds > 0
    for part in ("model", "ema"):
        assert all(torch.equal(v, states[1][part][k]) for k, v in states[0][part].items())


def workers_options():
    from transition_matching.methods import SampleOptions

    return SampleOptions(steps=2, head_steps=2)


def test_floors_of_toys_and_images():
    toy = quality.floors(TINY_PAPER, "checkerboard")
    assert toy["n"] == 48 and 0 < toy["w2"] < 2 and "cfid" not in toy
    img = quality.floors(TINY_PAPER, "digits")
    assert img["n"] == 30 and img["indep_acc"] > 0.8 and img["class_acc"] > 0.8 and img["cfid"] >= 0
    assert "w2" not in img


def test_independent_classifier_is_another_network(tmp_path):
    from transition_matching.classifier import (
        ConvClassifier,
        SmallClassifier,
        classifier_metrics,
        get_classifier,
    )
    from transition_matching.data import load_data

    data = load_data("digits", 4)
    mlp, cnn = get_classifier(data, tmp_path), get_classifier(data, tmp_path, "cnn")
    assert isinstance(mlp, SmallClassifier) and isinstance(cnn, ConvClassifier)
    assert len(list(tmp_path.iterdir())) == 2  # cached apart
    real = classifier_metrics(data, data.X[:300], data.labels[:300], tmp_path)
    noise = classifier_metrics(data, torch.randn(300, 4, 16).clamp(-1, 1), data.labels[:300], tmp_path)
    assert real["indep_acc"] > 0.9 and noise["indep_acc"] < 0.4
    assert set(classifier_metrics(data, data.X[:10], data.labels[:10], tmp_path, names=("indep_acc",))) == {
        "indep_acc"
    }
    again = get_classifier(data, tmp_path, "cnn")  # from the cache: the same weights
    assert all(
        torch.equal(a, b) for a, b in zip(cnn.state_dict().values(), again.state_dict().values(), strict=True)
    )


# ----------------------------------------------------------------------------------------- the page


def test_table_floor_row_and_compute_table():
    rows = [{"data": "x", "seed": s, "model": m, "method": m, "steps": 4, "head_steps": 1 if m == "dtm" else 0,
             "backbone_evals": 4, "head_evals": 4 if m == "dtm" else 0, "seconds_per_1000": 1.0 + (m == "dtm"),
             "train_seconds": 10.0, "train_steps": 100 if m == "fm" else 90, "w2": 0.7}
            for s in (0, 1) for m in ("fm", "dtm")]  # fmt: skip
    from transition_matching.study.aggregate import aggregate

    table = page.markdown_table(aggregate(rows, ("w2",)), ("w2",), {"n": 2000, "w2": 0.644})
    assert table.split("\n")[2] == "| data vs data (2000 vs 2000, the floor) | - | 0 | 0 | 0.644 | - | - |"
    comp = convergence.compute_table(rows, {"step_seconds": {"fm": 0.1, "dtm": 0.111}})
    assert "| dtm | 90 | 0.111 | 10 s | 10 |" in comp and "| fm | 100 | 0.100 | 10 s | 10 |" in comp


def test_convergence_section(tmp_path):
    spec = {"metrics": ("w2", "energy"), "steps": 32, "head_steps": 1, "n": 100}
    curves = {f"{s}/fm": {"spec": spec, "points": [{"step": k, "w2": 1.0 + 1 / k, "energy": 0.1} for k in (10, 20, 30, 40)]}
              for s in (0, 1)}  # fmt: skip
    text = convergence.section(curves, "x", tmp_path / "c.png")
    assert (tmp_path / "c.png").is_file()
    assert (
        "- FM 32, w2: 1.025 ± 0.000 after 40 steps; the last quarter of training changed it by -0.8 %: flat."
        in text
    )
    assert convergence.section({}, "x", tmp_path / "d.png") == ""


# ----------------------------------------------------------------------------------------- a tiny real run


@pytest.fixture
def tiny_paper(monkeypatch):
    monkeypatch.setitem(plan.MODES, "tiny_paper", TINY_PAPER)
    monkeypatch.setattr(page, "plot", lambda *a: None)


def test_real_tiny_paper_run(tiny_paper, monkeypatch, tmp_path, capsys):
    """Calibration and the estimate first, equal-compute steps, curves in the JSON and the page, floors, the
    independent accuracy, sample grids; a second invocation trains, evaluates and calibrates nothing."""
    out, root = tmp_path / "out", tmp_path / "runs"
    run_study("tiny_paper", out, root, methods=["fm", "dtm", "artm"], jobs=1)
    text = capsys.readouterr().out
    assert text.index("estimate:") < text.index("trained ") and "equal compute: " in text
    data = json.loads((out / "tm_quality_vs_nfe_tiny_paper.json").read_text())
    cal = data["calibration"]["checkerboard"]
    assert set(cal["step_seconds"]) == {"fm", "dtm", "artm1"} and cal["pass"]["flop_ratio"] > 0
    steps = {(r["data"], r["model"]): r["train_steps"] for r in data["rows"]}
    for name in ("dtm", "artm1"):
        assert steps[("checkerboard", name)] == budget.equal_compute_steps(6, cal["step_seconds"], name)
    assert steps[("checkerboard", "fm")] == 6 and ("digits", "artm1") not in steps  # digits: FM and DTM only
    assert {r["seed"] for r in data["rows"] if r["data"] == "digits"} == {0}
    assert set(data["curves"]["checkerboard"]) == {"0/fm", "0/dtm", "1/fm", "1/dtm"}
    pts = data["curves"]["digits"]["0/dtm"]["points"]
    assert [p["step"] for p in pts][-1] == steps[("digits", "dtm")] and all(
        "cfid" in p and "w2" in p for p in pts
    )
    assert data["floors"]["checkerboard"]["n"] == 48 and "indep_acc" in data["floors"]["digits"]
    assert all(0 <= r["indep_acc"] <= 1 for r in data["rows"] if r["data"] == "digits")
    md = (out / "tm_quality_vs_nfe_tiny_paper.md").read_text()
    assert "data vs data (48 vs 48, the floor)" in md and "Convergence:" in md and "Cost regime" in md
    assert (out / "tm_quality_vs_nfe_tiny_paper_digits_samples.png").is_file()
    assert "![digits samples](tm_quality_vs_nfe_tiny_paper_digits_samples.png)" in md
    assert np.load(quality.grid_file(root, "digits", 0, "dtm", 2, 2)).shape == (20, 8, 8, 1)
    assert (out / "tm_quality_vs_nfe_tiny_paper_checkerboard_curves.png").is_file()
    from transition_matching import cost

    monkeypatch.setattr(workers, "train_one", lambda *a: pytest.fail("trained again"))
    monkeypatch.setattr(workers, "measure_cells", lambda *a: pytest.fail("evaluated again"))
    monkeypatch.setattr(cost, "fastest", lambda *a: pytest.fail("timed again"))
    run_study("tiny_paper", out, root, methods=["fm", "dtm", "artm"], jobs=1)
    assert "0 to run" in capsys.readouterr().out
    again = json.loads((out / "tm_quality_vs_nfe_tiny_paper.json").read_text())
    assert again["curves"] == data["curves"] and again["calibration"] == data["calibration"]
    assert (
        budget.calibrate(root, "checkerboard", TINY_PAPER, ["fm", "dtm"])["step_seconds"]
        == cal["step_seconds"]
    )
    run_study("tiny_paper", tmp_path / "fresh", root, methods=["fm", "dtm", "artm"], jobs=1, fresh=True)
    fresh = json.loads((tmp_path / "fresh" / "tm_quality_vs_nfe_tiny_paper.json").read_text())
    for k in ("curves", "floors", "calibration"):  # a new record from the run folders: all of it
        assert fresh[k] == data[k], k
