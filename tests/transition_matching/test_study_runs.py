"""Running the quality-vs-NFE study: the command line benchmarks/tm_quality_vs_nfe.py over
transition_matching.study, resuming and merging (fake workers), and tiny real runs (a few training steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transition_matching.study import page, plan, workers
from transition_matching.study.runner import run_study

TINY = {"seeds": (0, 1), "steps": {"checkerboard": 3, "digits": 3}, "n_eval": 16, "fm_steps": (2, 4),
        "dtm": [(1, 1), (2, 4)], "ar_T": (1,), "ar_head_steps": (1,), "time_repeats": 0}  # fmt: skip
QUALITY = ("w2", "energy", "cfid", "class_acc")


@pytest.fixture(scope="module")
def cli(bench_script):
    return bench_script("tm_quality_vs_nfe")


@pytest.fixture
def tiny_mode(monkeypatch):
    """A 'tiny' mode (and no plots: matplotlib is slow, and the plots have no logic to test)."""
    monkeypatch.setitem(plan.MODES, "tiny", TINY)
    monkeypatch.setattr(page, "plot", lambda *a: None)


@pytest.fixture
def tiny(tiny_mode, monkeypatch):
    """The tiny mode with fake training and measuring that record their calls (deterministic rows)."""
    calls = {"train": [], "eval": []}

    def fake_train(root, data, seed, spec, steps, mode_name="full"):
        calls["train"].append((data, seed, spec["name"]))
        sec = {"fm": 1.0, "dtm": 2.0}.get(spec["name"], 3.0)
        return {"data": data, "seed": seed, "name": spec["name"], "method": spec["method"], "steps": steps,
                "seconds": sec}  # fmt: skip

    def fake_measure(root, data, seed, mode_name, names, stamp):
        calls["eval"].append((data, seed, tuple(sorted(names))))
        rows = []
        for n in sorted(names):
            method = "fm" if n == "fm-eqtime" else plan.method_of(n)
            T = int(n[-1]) if method in ("artm", "fhtm") else 0
            for steps, S in plan.sampling_grid(TINY, n, method, T):
                q = 1.0 + 0.1 * seed + 0.01 * len(n) + 1.0 / (steps * S)
                rows.append({"data": data, "seed": seed, "model": n, "method": method, "steps": steps,
                             "head_steps": 0 if method == "fm" else S, "backbone_evals": steps,
                             "head_evals": 0 if method == "fm" else steps * S, "train_steps": 3, "train_seconds": 1.0,
                             "times": [0.1 * steps], "timed_at": stamp, "w2": q, "energy": q / 10,
                             "seconds_per_1000": 0.01 * steps + 0.002 * steps * S})  # fmt: skip
        return rows

    monkeypatch.setattr(workers, "train_one", fake_train)
    monkeypatch.setattr(workers, "measure_cells", fake_measure)
    return calls


def tables(path: Path) -> str:
    """The generated part of a results page (everything after the reading)."""
    return path.read_text().split("<!-- /reading -->")[1]


def stored_rows(out: Path) -> list[dict]:
    return json.loads((out / "tm_quality_vs_nfe_tiny.json").read_text())["rows"]


def config_key(r: dict) -> tuple:
    return r["data"], r["seed"], r["model"], r["steps"], r["head_steps"]


def without_timing(rows: list[dict]) -> list[dict]:
    """The rows sorted, less what depends on the machine's speed (sampling and training seconds, the date)."""
    timing = {"times", "seconds_per_1000", "train_seconds", "timed_at"}
    return [{k: v for k, v in r.items() if k not in timing} for r in sorted(rows, key=config_key)]


# ----------------------------------------------------------------------------------------- the command line


def test_cli_hands_its_options_to_run_study(cli, monkeypatch):
    got = {}
    monkeypatch.setattr(cli, "run_study", lambda *a, **kw: got.update(args=a, kw=kw))
    assert cli.main(["--quick", "--data", "digits", "--seeds", "1", "2", "--methods", "artm", "--no-eqtime",
                     "--jobs", "1", "--ar-seeds", "1", "--note", "a b"]) == 0  # fmt: skip
    mode_name, out, root = got["args"]
    assert mode_name == "quick" and out == cli.RESULTS
    assert root == cli.ROOT / "runs" / "bench" / "tm_quality_vs_nfe_quick"
    assert got["kw"] == {"datasets": ["digits"], "seeds": [1, 2], "methods": ["artm"], "jobs": 1, "eqtime": False,
                         "ar_seeds": 1, "fresh": False, "note": "a b", "report_only": False, "estimate_only": False,
                         "command": "python benchmarks/tm_quality_vs_nfe.py --quick --data digits --seeds 1 2 "
                                    "--methods artm --no-eqtime --jobs 1 --ar-seeds 1 --note 'a b'"}  # fmt: skip
    cli.main([])  # the mode's data sets, seeds and methods (run_study fills them in)
    assert got["args"][0] == "full" and got["args"][2].name == "tm_quality_vs_nfe"
    assert got["kw"]["datasets"] is None and got["kw"]["seeds"] is None and got["kw"]["methods"] is None
    cli.main(["--paper", "--estimate-only"])
    assert got["args"][0] == "paper" and got["args"][2].name == "tm_quality_vs_nfe_paper"
    assert got["kw"]["estimate_only"] is True
    cli.main(["--paper", "--quick", "--data", "mnist"])
    assert got["args"][0] == "paper_quick" and got["kw"]["datasets"] == ["mnist"]
    cli.main(["--paper", "--long"])
    assert got["args"][0] == "paper_long" and got["args"][2].name == "tm_quality_vs_nfe_paper_long"
    with pytest.raises(SystemExit, match="--long goes with --paper"):
        cli.main(["--long"])


# ----------------------------------------------------------------------------------------- resume and merge


def test_second_invocation_skips_present_cells_and_merge_matches_one_run(cli, tiny, tmp_path):
    base = ["--mode", "tiny", "--data", "checkerboard", "--jobs", "1", "--root", str(tmp_path / "runs")]
    merged = base + ["--out", str(tmp_path / "merged")]
    cli.main(merged + ["--methods", "fm", "dtm"])
    assert sorted(tiny["train"]) == [("checkerboard", s, n) for s in (0, 1) for n in ("dtm", "fm")]
    tiny["train"].clear(), tiny["eval"].clear()
    cli.main(merged)  # the rest of the grid: fm and dtm are not trained or evaluated again
    assert sorted(tiny["train"]) == [
        ("checkerboard", s, n) for s in (0, 1) for n in ("artm1", "fhtm1", "fm-eqtime")
    ]
    assert sorted(tiny["eval"]) == [("checkerboard", s, ("artm1", "fhtm1", "fm-eqtime")) for s in (0, 1)]
    path = tmp_path / "merged" / "tm_quality_vs_nfe_tiny.md"
    first = tables(path)
    tiny["train"].clear(), tiny["eval"].clear()
    cli.main(merged)  # nothing left to do
    assert tiny["train"] == [] and tiny["eval"] == []
    assert tables(path) == first
    data = json.loads((tmp_path / "merged" / "tm_quality_vs_nfe_tiny.json").read_text())
    assert len(data["runs"]) == 2 and [r["cells"] for r in data["runs"]] == [4, 6]
    cli.main(base + ["--out", str(tmp_path / "one"), "--root", str(tmp_path / "runs1")])  # all in one go
    assert tables(tmp_path / "one" / "tm_quality_vs_nfe_tiny.md").replace("_tiny_", "") == first.replace(
        "_tiny_", ""
    )
    assert "| ARTM-1 x1 | 2 |" in first and "| FM-EQTIME 4 | 2 |" in first


def test_cell_cache_in_run_folder_is_reused_and_checked(tiny, tmp_path):
    def run(out: str) -> None:
        run_study("tiny", tmp_path / out, tmp_path / "r", datasets=["checkerboard"], seeds=[0], jobs=1)

    run("a")
    n_train = len(tiny["train"])
    run("b")  # a new JSON, but every cell is in the run folders
    assert len(tiny["train"]) == n_train
    assert tables(tmp_path / "a" / "tm_quality_vs_nfe_tiny.md") == tables(
        tmp_path / "b" / "tm_quality_vs_nfe_tiny.md"
    )
    TINY["n_eval"] = 32  # other settings: the stored cells no longer count
    try:
        run("a")
    finally:
        TINY["n_eval"] = 16
    assert len(tiny["train"]) == 2 * n_train


def test_report_only_runs_nothing(tiny, tmp_path, capsys):
    run_study("tiny", tmp_path, tmp_path / "r", datasets=["checkerboard"], report_only=True)
    assert tiny["train"] == [] and tiny["eval"] == []
    assert "10 cells asked for: 0 already present, 10 to run" in capsys.readouterr().out
    assert (
        "PARTIAL: 0 of the 30 cells of the default grid"
        in (tmp_path / "tm_quality_vs_nfe_tiny.md").read_text()
    )


def test_first_format_json_is_read_and_stale_cells_dropped(monkeypatch, tmp_path):
    monkeypatch.setitem(plan.MODES, "tiny", TINY)
    rows = [{"data": "checkerboard", "seed": seed, "model": m, "method": m, "steps": 4, "head_steps": 0,
             "train_steps": 3, "train_seconds": 1.0, "w2": 0.5} for m in ("fm", "dtm") for seed in (0, 1)]  # fmt: skip
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"command": "c", "date": "d", "seconds": 60.0, "mode": "tiny", "rows": rows}))
    kept, history = plan.load_previous(path, "tiny")
    assert len(kept) == len(rows) and all(r["timed_at"] == "d" for r in kept)
    assert history[0]["command"] == "c" and history[0]["cells"] == 4
    path.write_text(
        json.dumps({"mode": "tiny", "rows": [dict(r, train_steps=5) for r in rows]})
    )  # other steps
    assert plan.load_previous(path, "tiny")[0] == []
    assert plan.load_previous(path, "quick")[0] == []  # another mode's record is never merged


# ----------------------------------------------------------------------------------------- real tiny runs


def test_real_tiny_run_trains_evaluates_and_resumes(cli, tiny_mode, monkeypatch, tmp_path):
    """The real workers at 3 training steps: every method gives rows, and a rerun reuses the stored cells."""
    args = ["--mode", "tiny", "--data", "checkerboard", "--seeds", "0", "--jobs", "1", "--no-eqtime",
            "--root", str(tmp_path / "runs"), "--out", str(tmp_path)]  # fmt: skip
    cli.main(args)
    rows = stored_rows(tmp_path)
    assert {r["model"] for r in rows} == {"fm", "dtm", "artm1", "fhtm1"} and len(rows) == 2 + 2 + 1 + 1
    assert all(r["w2"] > 0 and r["seconds_per_1000"] > 0 and r["train_steps"] == 3 for r in rows)
    assert (tmp_path / "runs" / "checkerboard" / "seed0" / "dtm" / "bench_eval.json").is_file()
    monkeypatch.setattr(workers, "train_one", lambda *a: pytest.fail("trained again"))
    monkeypatch.setattr(workers, "measure_cells", lambda *a: pytest.fail("evaluated again"))
    cli.main(args + ["--fresh"])  # a new JSON from the cells stored in the run folders
    assert sorted(stored_rows(tmp_path), key=config_key) == sorted(rows, key=config_key)


def test_real_rows_count_evaluations_per_method(tiny_mode, monkeypatch, tmp_path):
    """Digits (4 tokens of 16 values, guidance 2): FM `steps` backbone passes; DTM T backbone passes and T x S
    head passes; ARTM/FHTM T x n of each kind of pass and T x n x S head passes. Guidance doubles the batch, not
    the count."""
    monkeypatch.setitem(TINY, "ar_T", (2,))
    monkeypatch.setitem(TINY, "ar_head_steps", (3,))
    run_study("tiny", tmp_path, tmp_path / "runs", datasets=["digits"], seeds=[0], jobs=1, eqtime=False)
    rows = stored_rows(tmp_path)
    got = {(r["model"], r["steps"], r["head_steps"]): (r["backbone_evals"], r["head_evals"]) for r in rows}
    n = 4
    assert got == {
        ("fm", 2, 0): (2, 0), ("fm", 4, 0): (4, 0),
        ("dtm", 1, 1): (1, 1), ("dtm", 2, 4): (2, 8),
        ("artm2", 2, 3): (2 * n, 2 * n * 3), ("fhtm2", 2, 3): (2 * n, 2 * n * 3),
    }  # fmt: skip
    assert all(r["trained_T"] == 2 for r in rows if r["method"] in ("artm", "fhtm"))
    assert all(0 <= r["class_acc"] <= 1 and r["cfid"] > 0 for r in rows)


def test_real_study_in_parts_gives_the_rows_of_one_run(tiny_mode, tmp_path):
    """Seeded training and sampling: FM and DTM first, then the rest added by a second invocation, give the
    same numbers as the whole grid in one invocation (other run folders, other interleaving)."""

    def run(name: str, methods=plan.METHODS) -> None:
        run_study("tiny", tmp_path / name, tmp_path / f"runs_{name}", datasets=["checkerboard"], seeds=[0], jobs=1,
                  methods=methods, eqtime=False)  # fmt: skip

    run("parts", ["fm", "dtm"])
    assert {r["model"] for r in stored_rows(tmp_path / "parts")} == {"fm", "dtm"}
    run("parts")
    run("whole")
    parts, whole = stored_rows(tmp_path / "parts"), stored_rows(tmp_path / "whole")
    assert len(whole) == 6 and without_timing(parts) == without_timing(whole)
    assert all(isinstance(r[k], float) for r in whole for k in QUALITY if k in r)
