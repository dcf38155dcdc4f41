"""Pure helpers of benchmarks/tm_quality_vs_nfe.py: aggregation over seeds, the headline numbers, the page."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "tm_quality_vs_nfe.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("tm_quality_vs_nfe", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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


def test_mean_std_and_median(bench):
    assert bench.mean_std([1.0, 3.0]) == pytest.approx((2.0, 2**0.5))
    assert bench.mean_std([5.0]) == (5.0, 0.0)
    assert bench.median([3.0, 1.0, 2.0]) == 2.0
    assert bench.median([4.0, 1.0]) == 2.5


def test_aggregate_groups_seeds(bench):
    agg = bench.aggregate(ROWS, ("w2", "energy"))
    assert [(a["model"], a["steps"]) for a in agg] == [("fm", 256), ("dtm", 2), ("dtm", 16)]
    fm = agg[0]
    assert fm["seeds"] == 2
    assert fm["w2"] == pytest.approx(0.6)
    assert fm["w2_std"] == pytest.approx(0.1414, abs=1e-4)
    assert fm["seconds_per_1000"] == pytest.approx(9.0)


def test_key_numbers_find_fastest_dtm_at_fm_quality(bench):
    agg = bench.aggregate(ROWS, ("w2",))
    key = bench.key_numbers(agg, "w2")
    assert key["dtm_best"]["steps"] == 2
    assert key["dtm_16x4"]["steps"] == 16
    assert key["dtm_fastest_at_ref"]["steps"] == 2  # 0.5 <= 0.6; 16x4 (0.8) does not reach FM-256
    assert key["speedup"] == pytest.approx(9.0)
    lines = "\n".join(bench.key_lines(key, "w2"))
    assert "meets the >= 7x goal" in lines


def test_key_numbers_without_a_winner(bench):
    rows = [r for r in ROWS if r["steps"] != 2]
    key = bench.key_numbers(bench.aggregate(rows, ("w2",)), "w2")
    assert key["dtm_fastest_at_ref"] is None and key["speedup"] is None
    assert "goal fails" in "\n".join(bench.key_lines(key, "w2"))


def test_higher_is_better_for_accuracy(bench):
    assert bench.reaches(0.9, 0.8, "class_acc") and not bench.reaches(0.9, 0.8, "cfid")
    assert bench.reaches(0.81, 0.8, "cfid") and not bench.reaches(0.83, 0.8, "cfid")


def test_markdown_keeps_reading(bench, tmp_path):
    agg = bench.aggregate(ROWS, ("w2",))
    table = bench.markdown_table(agg, ("w2",))
    assert "| DTM 2x16 | 2 | 2 | 32 | 0.500 ± 0.141 | 1.000 | " in table
    page = tmp_path / "r.md"
    bench.write_markdown(page, "# t", [table])
    text = page.read_text()
    page.write_text(text.replace("(to be written after looking at the numbers)", "my reading"))
    bench.write_markdown(page, "# t2", ["new"])
    text = page.read_text()
    assert "my reading" in text and "# t2" in text and "new" in text


def test_cost_fit_recovers_pass_costs(bench):
    agg = [
        {"method": "fm", "backbone_evals": b, "head_evals": 0, "seconds_per_1000": 0.02 * b} for b in (4, 16)
    ]
    agg += [{"method": "dtm", "backbone_evals": T, "head_evals": T * S, "seconds_per_1000": 0.02 * T + 0.005 * T * S}
            for T, S in ((2, 4), (8, 16))]  # fmt: skip
    b, h = bench.cost_fit(agg)
    assert b == pytest.approx(0.02) and h == pytest.approx(0.005)
