"""The DTM ablation (study.ablation, benchmarks/tm_dtm_ablation.py): its variants (one lever at a time), the
equal-compute steps, resuming per cell, the verdict from synthetic rows and the page. Fake workers here; the real
tiny run and the preset's head width are in test_dtm_ablation_run.py."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from tm_testutil import SECONDS, fake_row

from runkit.errors import UserError
from transition_matching.study import ablation, ablation_page, budget, plan, quality, workers

TINY = {"patch": 4, "backbone": "transformer", "width": 16, "depth": 1, "heads": 2, "head_width": 16,
        "head_depth": 1, "batch_size": 16, "lr": 1e-3, "warmup": 2}  # fmt: skip
LEVERS = {"dtm-draws4": {"head_draws"}, "dtm-logit": {"time_dist", "head_time_dist"},
          "dtm-head": {"head_width", "head_depth"},
          "dtm-all": {"head_draws", "time_dist", "head_time_dist", "head_width", "head_depth"}}  # fmt: skip


@pytest.fixture(scope="module")
def mode() -> dict:
    """The full ablation's mode on tiny networks (3 seeds, the 4x budget)."""
    return ablation.build_mode(train=TINY)


def test_one_lever_at_a_time(mode):
    names = [m["name"] for m in mode["models"]]
    assert names == ["fm", "fm-logit", "dtm", "dtm-draws4", "dtm-logit", "dtm-head", "dtm-all"]

    def settings(name: str) -> dict:
        return workers.model_settings(mode, "digits", next(m for m in mode["models"] if m["name"] == name))

    base = settings("dtm")
    for name, keys in LEVERS.items():  # each lever model differs from the baseline in its lever only
        s = settings(name)
        assert {k for k in s if s[k] != base.get(k)} == keys, name
    assert settings("dtm-all")["head_draws"] == 4 and settings("dtm-logit")["time_dist"] == "logit_normal"
    assert settings("dtm-head")["head_width"] == mode["head"]["width"] != base["head_width"]
    assert (
        settings("dtm-head")["head_depth"]
        == mode["head"]["depth"]
        == ablation.HEAD_DEPTH
        != base["head_depth"]
    )
    fm, fm_logit = settings("fm"), settings("fm-logit")
    assert {k for k in fm_logit if fm_logit[k] != fm.get(k)} == {"time_dist"}
    v = {a["key"]: a for a in mode["variants"]}
    assert list(v) == ["baseline", "draws4", "logit", "head", "sde", "all", "all-euler", "fm-128", "fm-logit-128",
                       "fm-256", "fm-logit-256"]  # fmt: skip
    assert all((a["steps"], a["head_steps"]) == (16, 4) for a in v.values() if a["method"] == "dtm")
    assert (v["sde"]["model"], v["sde"]["head_solver"]) == ("dtm", "sde")  # sampling only: the baseline model
    assert (v["all"]["model"], v["all"]["head_solver"]) == ("dtm-all", "sde")
    assert plan.sampling_grid(mode, "dtm", "dtm", 16) == [(16, 4, "euler"), (16, 4, "sde")]
    assert plan.sampling_grid(mode, "dtm-draws4", "dtm", 16) == [(16, 4, "euler")]
    assert plan.sampling_grid(mode, "fm-logit", "fm", 0) == [(128, 1, "euler"), (256, 1, "euler")]
    assert quality.curve_spec(mode, "digits", "fm-logit", 100)["steps"] == 128  # FM 128 while training
    assert (quality.curve_spec(mode, "digits", "dtm-all", 100)["steps"], quality.curve_spec(mode, "digits", "dtm-all", 100)["head_steps"]) == (16, 4)  # fmt: skip
    assert mode["steps"]["digits"] == 4 * 1200 and mode["seeds"] == (0, 1, 2)
    assert pickle.loads(pickle.dumps(mode)) == mode  # handed whole to the worker processes


def test_modes_and_records_of_their_own(mode):
    quick = ablation.build_mode(quick=True, train=TINY)
    assert quick["seeds"] == (0,) and quick["steps"]["digits"] == 150 and quick["target_min"] == 10
    assert plan.cell_settings(quick, "digits") != plan.cell_settings(mode, "digits")
    assert ablation.mode_name_of(True) == "quick" and ablation.mode_name_of(False) == "full"
    assert ablation.mode_name_of(False, 1) == "full_x1"
    assert ablation.build_mode(scale=1, train=TINY)["steps"]["digits"] == 1200
    assert ablation.record_path(Path("o"), "quick") == Path("o/tm_dtm_ablation_quick.json")
    sde = ablation.build_mode(train=TINY, sde="sde:0.5")
    assert plan.cell_settings(sde, "digits") != plan.cell_settings(mode, "digits")  # stored rows are stale
    with pytest.raises(UserError):
        ablation.build_mode(train=TINY, sde="midpoint")


# ----------------------------------------------------------------------------------------- equal compute


def test_equal_compute_gives_a_dearer_step_proportionally_fewer_steps(mode):
    cal = {"step_seconds": SECONDS, "n_tokens": 4, "pass": {"backbone_seconds": 1e-4, "head_seconds": 2e-6}}
    todo = {("digits", s): plan.models_for(mode) for s in mode["seeds"]}
    steps = budget.training_steps(mode, todo, {"digits": cal})
    assert steps[("digits", "fm")] == 4800 and steps[("digits", "dtm-all")] == 2400  # twice the cost: half
    assert steps[("digits", "dtm-draws4")] == 3200 and steps[("digits", "dtm")] == 4570
    for (_, name), k in steps.items():  # the same compute, up to the rounding to 10 steps
        assert abs(k * SECONDS[name] - 4800 * 0.2) <= 5 * SECONDS[name]
    est = budget.estimate(mode, todo, steps, {"digits": cal}, jobs=2)
    assert est["train"] == pytest.approx(
        3 * sum(steps[("digits", n)] * SECONDS[n] for n in (m["name"] for m in mode["models"]))
    )
    assert est["curve"] > 0 and est["sample"] > 0 and est["wall"] >= est["total"] / 2
    # cells whose finished runs training reuses count their evaluation only
    reused = budget.estimate(
        mode, todo, steps, {"digits": cal}, 2, frozenset(("digits", s, "fm") for s in mode["seeds"])
    )
    assert est["train"] - reused["train"] == pytest.approx(3 * steps[("digits", "fm")] * SECONDS["fm"])
    assert reused["sample"] == est["sample"] and reused["curve"] < est["curve"]


def test_calibration_times_a_model_again_when_its_settings_change(monkeypatch, tmp_path, mode):
    from transition_matching import cost

    sessions = iter([[0.2, 0.2, 0.3], [0.4, 0.8]])  # seconds of 2 steps: (fm, dtm, dtm-head); (fm, dtm-head)

    def fake(fns, repeats, *a):
        return [1e-3, 1e-4] if fns[0].__name__ == "run_backbone" else next(sessions)

    monkeypatch.setattr(cost, "fastest", fake)
    cal = budget.calibrate(tmp_path, "digits", mode, ["fm", "dtm", "dtm-head"])
    assert cal["step_seconds"] == pytest.approx({"fm": 0.1, "dtm": 0.1, "dtm-head": 0.15})
    assert budget.calibrate(tmp_path, "digits", mode, ["fm", "dtm-head"]) == cal  # nothing new: not timed
    wider = {**mode, "models": ablation.lever_models({**mode["head"], "width": mode["head"]["width"] + 4})}
    cal = budget.calibrate(tmp_path, "digits", wider, ["fm", "dtm", "dtm-head"])
    assert cal["step_seconds"] == pytest.approx({"fm": 0.1, "dtm": 0.1, "dtm-head": 0.2})  # on FM's old scale
    assert cal["models"]["dtm-head"]["head_width"] == mode["head"]["width"] + 4


# ----------------------------------------------------------------------------------------- resuming (fake workers)


def test_resume_skips_finished_cells(ablation_fakes, mode, tmp_path, capsys):
    fakes = ablation_fakes
    out, root = tmp_path / "out", tmp_path / "runs"

    def run(m=mode, **kw):
        ablation.run_ablation(out, root, m, "full", jobs=1, command="cmd", **kw)

    run(seeds=[0])
    assert sorted(n for _, n, _ in fakes["train"]) == sorted(m["name"] for m in mode["models"])
    assert dict((n, k) for _, n, k in fakes["train"])["dtm-all"] == 2400  # equal compute
    assert fakes["eval"] == [(0, tuple(sorted(m["name"] for m in mode["models"])))]
    fakes["train"].clear(), fakes["eval"].clear()
    run(seeds=[0, 1])  # only seed 1 is new
    assert {s for s, _, _ in fakes["train"]} == {1} and [s for s, _ in fakes["eval"]] == [1]
    record = json.loads((out / "tm_dtm_ablation.json").read_text())
    assert {r["seed"] for r in record["rows"]} == {0, 1} and len(record["runs"]) == 2
    assert len(record["rows"]) == 2 * len(mode["variants"]) and record["floors"]["digits"]["n"] == 20
    fakes["train"].clear(), fakes["eval"].clear()
    run(seeds=[0, 1])
    assert (
        fakes["train"] == [] and "14 cells asked for: 14 already present, 0 to run" in capsys.readouterr().out
    )
    (out / "tm_dtm_ablation.json").unlink()  # a lost record: the cells come back from the run folders
    run(seeds=[0, 1])
    assert fakes["train"] == [] and fakes["eval"] == []
    again = json.loads((out / "tm_dtm_ablation.json").read_text())
    key = lambda r: (r["seed"], r["model"], r["steps"], r.get("head_solver"))  # noqa: E731
    assert sorted(again["rows"], key=key) == sorted(record["rows"], key=key)
    run(seeds=[2], estimate_only=True)  # calibrates and estimates, trains nothing, writes nothing
    text = capsys.readouterr().out
    assert fakes["train"] == [] and "estimate:" in text and "equal compute: " in text
    assert len(json.loads((out / "tm_dtm_ablation.json").read_text())["rows"]) == len(again["rows"])
    other = ablation.build_mode(train=TINY, sde="sde:0.5")  # other settings: a new record, all cells again
    run(other, seeds=[0])
    assert "other settings" in capsys.readouterr().out and len(fakes["eval"]) == 1
    assert {r["head_solver"] for r in json.loads((out / "tm_dtm_ablation.json").read_text())["rows"]} == {
        "euler", "sde:0.5"}  # fmt: skip


# ----------------------------------------------------------------------------------------- the verdict


def table_of(mode: dict, cfid: dict, seconds: dict | None = None, seeds: int = 3) -> list[dict]:
    """The variant table of synthetic rows: cfid per variant key (a mean; seeds spread it by ±0.1 when 3),
    seconds per 1,000 samples (FM k: k / 10, DTM 2)."""
    seconds = seconds or {}
    rows = []
    for v in mode["variants"]:
        sec = seconds.get(v["key"], v["steps"] / 10 if v["method"] == "fm" else 2.0)
        for s in range(seeds):
            rows.append(fake_row(v, s, cfid[v["key"]] + (0.1 * (s - 1) if seeds == 3 else 0.0), sec))
    return ablation_page.variant_table(rows, mode["variants"])


BASE = {"baseline": 6.4, "draws4": 6.0, "logit": 6.2, "head": 6.3, "sde": 6.1, "all": 5.5, "all-euler": 5.7,
        "fm-128": 4.6, "fm-logit-128": 4.8, "fm-256": 4.55, "fm-logit-256": 4.7}  # fmt: skip


def test_verdict_not_met_when_dtm_is_worse_beyond_the_spread(mode):
    got = ablation_page.verdict(table_of(mode, BASE))
    assert got["goal"] is False and got["moonshot"] is False and got["fm_goal"] == "fm-128"
    assert got["pick"] == "all" and got["line"].startswith("**Verdict: goal not met.**")
    assert "worse by 0.900, more than the seed spread 0.141" in got["line"]


def test_verdict_met_within_the_spread_and_the_moonshot(mode):
    close = {**BASE, "all": 4.7, "fm-logit-128": 4.75}
    got = ablation_page.verdict(table_of(mode, close))
    assert got["goal"] is True and got["pick"] == "all" and "6.4x less sampling wall time" in got["line"]
    assert got["moonshot"] is False and "**Moonshot not met**" in got["line"]
    better = {
        **BASE,
        "all": 4.3,
        "fm-logit-128": 4.2,
    }  # FM 128's better time sampling is the logit-normal one
    got = ablation_page.verdict(table_of(mode, better))
    assert got["fm_goal"] == "fm-logit-128" and got["goal"] is True
    assert got["moonshot"] is True and "**Moonshot met** by more than the seed spread" in got["line"]


def test_verdict_not_met_when_too_slow_or_one_seed(mode):
    close = {**BASE, "all": 4.7}
    slow = ablation_page.verdict(table_of(mode, close, {"all": 4.0, "sde": 4.0, "all-euler": 4.0}))
    assert slow["goal"] is False and "only 3.2x less wall time (the goal: >= 5x)" in slow["line"]
    one = ablation_page.verdict(table_of(mode, close, seeds=1))
    assert one["goal"] is False and one["moonshot"] is False and "fewer than 2 seeds" in one["line"]
    none = ablation_page.verdict([a for a in table_of(mode, BASE) if a["method"] == "dtm"])
    assert none["goal"] is None and "none yet" in none["line"]


# ----------------------------------------------------------------------------------------- the page


def test_page_from_synthetic_rows(mode, tmp_path):
    rows = []
    for v in mode["variants"]:
        rows += [fake_row(v, s, BASE[v["key"]] + 0.1 * (s - 1), v["steps"] / 10 if v["method"] == "fm" else 2.0)
                 for s in range(3)]  # fmt: skip
    curves = {f"{s}/{name}": {"spec": quality.curve_spec(mode, "digits", name, 100), "train_steps": 100,
                              "points": [{"step": k, "cfid": c0 * (1 + c1 / k)} for k in (25, 50, 75, 100)]}
              for s in range(3) for name, c0, c1 in (("fm", 4.6, 10), ("dtm-all", 5.5, 100))}  # fmt: skip
    cal = {"step_seconds": SECONDS, "pass": {"flop_ratio": 94.1, "time_ratio": 51.6, "param_ratio": 56.7}}
    extras = {"curves": {"digits": curves}, "floors": {"digits": {"n": 600, "cfid": 1.03, "indep_acc": 0.985}},
              "calibration": {"digits": cal}}  # fmt: skip
    path = tmp_path / "tm_dtm_ablation.json"
    history = [{"command": "python benchmarks/tm_dtm_ablation.py --seeds 0 1 2", "date": "d", "seconds": 60}]
    got = ablation_page.write_page(path, "full", mode, rows, history, extras)
    md = path.with_suffix(".md").read_text()
    lines = md.split("\n")
    assert lines[2] == "Command: `python benchmarks/tm_dtm_ablation.py --seeds 0 1 2`"
    assert lines[4].startswith("**Verdict: goal not met.**") and got["goal"] is False
    assert "| DTM 16x4 baseline | none | dtm | 100 | 10 | 3 | 6.400 ± 0.100 | 6.30, 6.40, 6.50 | - |" in md
    assert (
        "| DTM 16x4 + head_draws 4 | head_draws 4 (was 1) | dtm-draws4 | 100 | 10 | 3 | 6.000 ± 0.100 |" in md
    )
    assert (
        "| -0.400 (-6.3 %) | 0.990 ± 0.000 | 2.000 ± 0.000 | 6.4x |" in md
    )  # Δ vs baseline, speed vs FM 128
    assert "| data vs data (600 vs 600, the floor) | - | - | - | - | - | 1.030 |" in md
    assert "| dtm-all | 100 | 0.400 | 40 s | 10 |" in md  # the equal-compute table
    assert ("**Converged?** the best DTM recipe (DTM 16x4, all levers, model dtm-all): still changing (-14.3 %); "
            "the better FM 128 (FM 128 (uniform t), model fm): flat (-2.9 %)." in md)  # fmt: skip
    assert (
        "- fm (128 steps): cFID 5.060 ± 0.000 after 100 steps" in md and "- dtm-all (16x4): cFID 11.000" in md
    )
    assert path.with_name("tm_dtm_ablation_curves.png").is_file()
    assert "PARTIAL" not in md and json.loads(path.read_text())["verdict"]["pick"] == "all"
    edited = md.replace("(to be written after looking at the numbers)", "hand-written")
    path.with_suffix(".md").write_text(edited)
    ablation_page.write_page(path, "full", mode, rows[:3], history, {})  # the reading survives a rewrite
    md = path.with_suffix(".md").read_text()
    assert "hand-written" in md and "PARTIAL: 3 of the 21 cells" in md and "Quality vs training" not in md
    assert "**Verdict: none yet**" in md


# ----------------------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def cli(bench_script):
    return bench_script("tm_dtm_ablation")


def test_cli_hands_its_options_to_the_ablation(cli, monkeypatch):
    got = {}
    monkeypatch.setattr(cli, "build_mode", lambda *a, part: {"built": a, "part": part})
    monkeypatch.setattr(cli, "run_ablation", lambda *a, **kw: got.update(args=a, kw=kw))
    assert cli.main(["--quick", "--seeds", "1", "--jobs", "1", "--note", "a b"]) == 0
    out, root, mode, name = got["args"]
    assert out == cli.RESULTS and root == cli.ROOT / "runs" / "bench" / "tm_dtm_ablation_quick"
    assert name == "quick" and mode == {"built": (True, 4, 0.02, "sde"), "part": "levers"}
    assert got["kw"] == {"seeds": [1], "jobs": 1, "fresh": False, "note": "a b", "report_only": False,
                         "estimate_only": False,
                         "command": "python benchmarks/tm_dtm_ablation.py --quick --seeds 1 --jobs 1 --note 'a b'"}  # fmt: skip
    cli.main(["--estimate-only", "--scale", "1", "--sde", "sde:0.5", "--head-share", "0.05"])
    assert got["args"][3] == "full_x1" and got["args"][1].name == "tm_dtm_ablation_full_x1"
    assert got["args"][2]["built"] == (False, 1, 0.05, "sde:0.5") and got["kw"]["estimate_only"] is True
    cli.main([])
    assert (
        got["args"][3] == "full" and got["args"][1].name == "tm_dtm_ablation" and got["kw"]["seeds"] is None
    )
    cli.main(["--part", "causal"])  # trains in the levers' folder, records a page of its own
    assert got["args"][3] == "causal" and got["args"][1].name == "tm_dtm_ablation"
    assert got["args"][2]["part"] == "causal"
    cli.main(["--part", "mnist", "--quick"])
    assert got["args"][3] == "mnist_quick" and got["args"][1].name == "tm_dtm_ablation_mnist_quick"
    with pytest.raises(SystemExit, match="--scale must be"):
        cli.main(["--scale", "0"])
    monkeypatch.undo()
    with pytest.raises(SystemExit, match="tm_dtm_ablation: error"):
        cli.main(["--sde", "euler"])
