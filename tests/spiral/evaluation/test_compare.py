"""Paired comparison: bootstrap intervals cover known differences; folders pair by item id and suite."""

import json
import random

import pytest

from runkit.errors import UserError
from spiral.evaluation.compare import compare, format_comparison
from spiral.evaluation.stats import bootstrap_mean, paired_difference


def test_bootstrap_mean_covers_the_mean_and_is_seeded():
    rng = random.Random(0)
    values = [float(rng.random() < 0.3) for _ in range(400)]
    mean, lo, hi = bootstrap_mean(values, seed=1)
    assert lo < 0.3 < hi and lo < mean < hi
    assert (mean, lo, hi) == bootstrap_mean(values, seed=1)
    assert bootstrap_mean([0.5, 0.5]) == (0.5, 0.5, 0.5)


def test_paired_interval_covers_a_known_difference_and_excludes_zero():
    rng = random.Random(0)
    # Per-item mean accuracy over 4 samples; B solves each item with probability 0.25 more than A.
    a, b = [], []
    for _ in range(300):
        p = rng.random() * 0.5
        a.append(sum(rng.random() < p for _ in range(4)) / 4)
        b.append(sum(rng.random() < p + 0.25 for _ in range(4)) / 4)
    r = paired_difference(a, b, seed=0)
    lo, hi = r["ci"]
    assert 0 < lo < 0.25 < hi
    assert r["b_better"] > r["a_better"]


def test_paired_interval_includes_zero_without_a_difference():
    rng = random.Random(1)
    a = [float(rng.random() < 0.5) for _ in range(200)]
    b = [float(rng.random() < 0.5) for _ in range(200)]
    lo, hi = paired_difference(a, b, seed=0)["ci"]
    assert lo < 0 < hi


def test_pairing_needs_equal_lengths():
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 0.0])


def _write_run(folder, model, scores, n=2, suite="math-procedural"):
    """A results folder as `spiral eval reasoning` writes it: item -> list of per-sample correctness."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": model, "suite": suite, "n": n}))
    lines = []
    for item, correct in scores.items():
        for j, c in enumerate(correct):
            lines.append(json.dumps({"item": item, "task": item.split("/")[0], "sample": j, "correct": c}))
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n")


def test_compare_folders_pairs_by_item_and_reports_tasks(tmp_path):
    items_a = {f"gcd/{i}": [False, False] for i in range(30)} | {f"lcm/{i}": [True, False] for i in range(30)}
    items_b = {f"gcd/{i}": [True, True] for i in range(30)} | {f"lcm/{i}": [True, False] for i in range(30)}
    items_b["extra/1"] = [True, True]  # only in B: left out of the pairing
    items_a["gcd/99"] = [True]  # unfinished in A (1 of 2 samples): left out
    _write_run(tmp_path / "a", "base", items_a)
    _write_run(tmp_path / "b", "trained", items_b)
    result = compare(tmp_path / "a", tmp_path / "b")
    (suite,) = result["suites"].values()
    assert suite["tasks"]["gcd"]["diff"] == pytest.approx(1.0)
    assert suite["tasks"]["lcm"]["diff"] == pytest.approx(0.0)
    assert suite["overall"]["items"] == 60
    assert suite["overall"]["ci"][0] > 0
    assert suite["only_b"] == 1
    text = format_comparison(result)
    assert "gcd" in text and "+1.000" in text


def test_compare_folders_of_suites(tmp_path):
    for model in ("base", "trained"):
        for suite in ("champ", "math-procedural"):
            ok = model == "trained"
            _write_run(tmp_path / model / suite, model, {f"t/{i}": [ok, ok] for i in range(5)}, suite=suite)
    result = compare(tmp_path / "base", tmp_path / "trained")
    assert sorted(result["suites"]) == ["champ", "math-procedural"]
    assert all(r["overall"]["diff"] == 1.0 for r in result["suites"].values())


def test_compare_errors(tmp_path):
    _write_run(tmp_path / "a", "x", {"t/1": [True, True]})
    _write_run(tmp_path / "b", "y", {"t/2": [True, True]})
    with pytest.raises(UserError, match="share no finished items"):
        compare(tmp_path / "a", tmp_path / "b")
    with pytest.raises(UserError, match="does not exist"):
        compare(tmp_path / "a", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no results.jsonl"):
        compare(tmp_path / "empty", tmp_path / "a")
