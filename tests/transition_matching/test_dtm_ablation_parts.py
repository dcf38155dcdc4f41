"""The DTM ablation's follow-ups (study.ablation, `--part mnist | causal`): their models carry the levers' recipe,
the causal part reuses the levers' FM runs, the causal verdict ("FHTM matches or beats FM") from synthetic rows,
sample grids with a head solver, and a resumable run with fake workers that writes the part's own page."""

from __future__ import annotations

import json

import pytest
from tm_testutil import fake_row

from runkit.errors import UserError
from transition_matching.study import ablation, ablation_page, plan, quality, workers

TINY = {"patch": 4, "backbone": "transformer", "width": 16, "depth": 1, "heads": 2, "head_width": 16,
        "head_depth": 1, "batch_size": 16, "lr": 1e-3, "warmup": 2}  # fmt: skip
RECIPE = {"head_draws", "head_time_dist", "head_width", "head_depth"}


@pytest.fixture(scope="module")
def modes() -> dict:
    return {part: ablation.build_mode(train=TINY if part != "mnist" else {**TINY, "patch": 7}, part=part)
            for part in ablation.PARTS}  # fmt: skip


def settings(mode: dict, name: str) -> dict:
    data = mode["datasets"][0]
    return workers.model_settings(mode, data, next(m for m in mode["models"] if m["name"] == name))


def test_the_causal_part_reuses_the_levers_fm_runs_and_adds_the_recipe(modes):
    levers, causal = modes["levers"], modes["causal"]
    assert [m["name"] for m in causal["models"]] == ["fm", "fm-logit", "artm", "artm-all", "fhtm", "fhtm-all"]
    for name in (
        "fm",
        "fm-logit",
    ):  # identical settings and curves: train_one finds the levers' finished runs
        assert settings(causal, name) == settings(levers, name)
        assert quality.curve_spec(causal, "digits", name, 4800) == quality.curve_spec(
            levers, "digits", name, 4800
        )
    assert causal["steps"] == levers["steps"] and causal["head"] == levers["head"]
    for m in ("artm", "fhtm"):
        plain, rec = settings(causal, m), settings(causal, f"{m}-all")
        assert plain["schedule"] == plan.T3 and plain["method"] == m
        assert {k for k in rec if rec[k] != plain.get(k)} == RECIPE  # the head levers, not DTM's continuous t
        assert rec["head_width"] == causal["head"]["width"] and rec["head_depth"] == ablation.HEAD_DEPTH
        assert quality.curve_spec(causal, "digits", m, 100) is None  # curves for FM and DTM only
        assert plan.sampling_grid(causal, f"{m}-all", m, 3) == [(3, 4, "euler"), (3, 4, "sde"), (3, 16, "euler"),
                                                                (3, 16, "sde")]  # fmt: skip
    assert causal["verdict"] == "causal" and levers["verdict"] == "dtm" and "grid" not in levers
    assert plan.cell_settings(causal, "digits") != plan.cell_settings(levers, "digits")  # a record of its own


def test_the_mnist_part_trains_the_recipe_against_both_fm_time_samplings(modes):
    mnist, levers = modes["mnist"], modes["levers"]
    assert mnist["datasets"] == ("mnist",) and mnist["steps"]["mnist"] == 4 * 1000
    assert [m["name"] for m in mnist["models"]] == ["fm", "fm-logit", "dtm-all"]
    rec, lev = settings(mnist, "dtm-all"), settings(levers, "dtm-all")
    assert {k: rec[k] for k in (*RECIPE, "time_dist")} == {k: lev[k] for k in (*RECIPE, "time_dist")}
    assert mnist["head"]["depth"] == ablation.HEAD_DEPTH
    real = ablation.head_width_for(plan.DATA_PAPER["mnist"]["train"], depth=ablation.HEAD_DEPTH, data="mnist")
    assert (real["width"], real["preset_width"]) == (48, 64) and real["share"] == pytest.approx(
        0.0213, abs=1e-4
    )
    assert [v["key"] for v in mnist["variants"]][:2] == ["all", "all-euler"]
    assert mnist["grid"]["configs"] == (("fm-logit", 128, 1), ("dtm-all", 16, 4, "sde"))
    assert mnist["n_eval"]["mnist"] == 200 and mnist["curve"]["n"]["mnist"] == 100  # MNIST's samples are dear
    quick = ablation.build_mode(quick=True, train={**TINY, "patch": 7}, part="mnist")
    assert quick["steps"]["mnist"] == 60 and quick["seeds"] == (0,)
    with pytest.raises(UserError, match="unknown part"):
        ablation.build_mode(train=TINY, part="cifar")


def test_records_and_run_folders_of_the_parts():
    assert ablation.mode_name_of(False, 4, "mnist") == "mnist"
    assert ablation.mode_name_of(True, 4, "causal") == "causal_quick"
    assert ablation.mode_name_of(False, 2, "mnist") == "mnist_full_x2"
    assert ablation.root_name_of(False, 4, "causal") == "tm_dtm_ablation"  # the levers' folder
    assert ablation.root_name_of(True, 4, "causal") == "tm_dtm_ablation_quick"
    assert ablation.root_name_of(False, 4, "mnist") == "tm_dtm_ablation_mnist"


# ----------------------------------------------------------------------------------------- the causal verdict


def table_of(mode: dict, cfid: dict, seeds: int = 3) -> list[dict]:
    """Synthetic rows: cfid per model (seeds spread it by ±0.1 when 3; +0.5 for 4 head steps of ARTM/FHTM)."""
    rows = []
    for v in mode["variants"]:
        c = cfid[v["model"]] + (0.5 if v["method"] != "fm" and v["head_steps"] == 4 else 0.0)
        rows += [fake_row(v, s, c + (0.1 * (s - 1) if seeds == 3 else 0.0), 1.0) for s in range(seeds)]
    return ablation_page.variant_table(rows, mode["variants"])


CAUSAL = {"fm": 4.6, "fm-logit": 3.6, "artm": 6.0, "artm-all": 5.0, "fhtm": 5.5, "fhtm-all": 3.7}


def test_causal_verdict_holds_within_the_spread_and_names_the_best_rows(modes):
    got = ablation_page.causal_verdict(table_of(modes["causal"], CAUSAL))
    assert got["fhtm"] is True and got["artm"] is False and got["fm_goal"] == "fm-logit-128"
    assert got["pick_fhtm"].startswith("fhtm-all-16") and got["pick_artm"].startswith("artm-all-16")
    assert got["line"].startswith('**Verdict: "FHTM matches or beats FM" holds.**')
    assert "FHTM matches it (within the seed spread)" in got["line"] and "ARTM is worse" in got["line"]
    beats = ablation_page.causal_verdict(table_of(modes["causal"], {**CAUSAL, "fhtm-all": 3.0}))
    assert beats["fhtm"] is True and "FHTM beats it" in beats["line"]


def test_causal_verdict_does_not_hold_or_is_undecided(modes):
    worse = ablation_page.causal_verdict(table_of(modes["causal"], {**CAUSAL, "fhtm-all": 4.5}))
    assert worse["fhtm"] is False and '"FHTM matches or beats FM" does not hold' in worse["line"]
    one = ablation_page.causal_verdict(table_of(modes["causal"], CAUSAL, seeds=1))
    assert one["fhtm"] is None and "undecided (fewer than 2 seeds)" in one["line"]
    none = ablation_page.causal_verdict([a for a in table_of(modes["causal"], CAUSAL) if a["method"] != "fm"])
    assert none["line"].startswith("**Verdict: none yet**")


# ----------------------------------------------------------------------------------------- grids and a run


def test_grid_files_and_titles_name_the_head_solver(tmp_path):
    assert quality.grid_file(tmp_path, "mnist", 0, "dtm", 16, 4).name == "grid_16x4.npy"  # the study's names
    assert (
        quality.grid_file(tmp_path, "mnist", 0, "dtm-all", 16, 4, "sde:0.5").name == "grid_16x4_sde-0.5.npy"
    )
    assert quality.grid_title("fm", 128, 1) == "FM 128" and quality.grid_title("dtm", 16, 4) == "DTM 16x4"
    assert quality.grid_title("fm-logit", 128, 1) == "fm-logit 128"
    assert quality.grid_title("dtm-all", 16, 4, "sde") == "dtm-all 16x4 sde"


def test_a_causal_run_resumes_and_writes_its_own_page(ablation_fakes, modes, tmp_path):
    out, root, causal = tmp_path / "out", tmp_path / "runs", modes["causal"]
    ablation.run_ablation(out, root, causal, "causal", seeds=[0, 1], jobs=1, command="cmd --part causal")
    trained = {n for _, n, _ in ablation_fakes["train"]}
    assert trained == {m["name"] for m in causal["models"]}
    record = json.loads((out / "tm_dtm_ablation_causal.json").read_text())
    assert record["verdict"]["fhtm"] is True  # every row 5 + seed: FHTM equals FM
    md = (out / "tm_dtm_ablation_causal.md").read_text()
    assert md.startswith("# The causal variants on digits: ARTM and FHTM")
    assert (
        '"FHTM matches or beats FM" holds' in md
        and "`transition_matching.study.ablation_page.causal_verdict`" in md
    )
    assert "| FHTM-3 x16, recipe, sde head |" in md and "T = 3 schedule" in md
    ablation_fakes["train"].clear()
    ablation.run_ablation(out, root, causal, "causal", seeds=[0, 1], jobs=1, command="cmd")
    assert ablation_fakes["train"] == []  # resumed: nothing trained again


def test_the_mnist_page_shows_the_sample_grids(modes, tmp_path, monkeypatch):
    mnist = modes["mnist"]
    rows = [fake_row(v, s, 30.0 + s, 1.0, "mnist") for v in mnist["variants"] for s in range(2)]
    monkeypatch.setattr(quality, "render_grids", lambda root, path, d, mode: path.write_bytes(b"png") or True)
    monkeypatch.setattr(ablation_page, "render_grids", quality.render_grids)
    path = tmp_path / "tm_dtm_ablation_mnist.json"
    ablation_page.write_page(path, "mnist", mnist, rows, [{"command": "c"}], {}, root=tmp_path)
    md = path.with_suffix(".md").read_text()
    assert md.startswith("# DTM's recipe on MNIST 28x28") and "## Samples (seed 0)" in md
    assert "![samples](tm_dtm_ablation_mnist_samples.png)" in md and "Sample grids: seed 0" in md
    ablation_page.write_page(path, "mnist", mnist, rows, [{"command": "c"}], {})  # no run folder: no grids
    assert "## Samples" not in path.with_suffix(".md").read_text()
    assert json.loads(path.read_text())["verdict"]["goal"] is False  # equal cFID, but no faster than FM
