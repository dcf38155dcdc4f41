"""Suites build offline, deterministically, with stable ids; bad input is a clear UserError."""

import json
import re

import pytest

from runkit.errors import UserError
from spiral.evaluation.suites import build_suite, stable_int

TASKS = ["basic_arithmetic", "gcd"]


def test_same_seed_same_ids_different_seed_different_items():
    a = build_suite("math-procedural", n_per_task=5, seed=3, tasks=TASKS)
    b = build_suite("math-procedural", n_per_task=5, seed=3, tasks=TASKS)
    c = build_suite("math-procedural", n_per_task=5, seed=4, tasks=TASKS)
    ids = [it.id for it in a.items]
    assert ids == [it.id for it in b.items]
    assert [it.question for it in a.items] == [it.question for it in b.items]
    assert len(set(ids)) == len(ids) == 10
    assert not set(ids) & {it.id for it in c.items}
    assert a.tasks == TASKS


def test_task_seed_does_not_depend_on_other_tasks():
    alone = build_suite("math-procedural", n_per_task=3, seed=0, tasks=["gcd"])
    mixed = build_suite("math-procedural", n_per_task=3, seed=0, tasks=["lcm", "gcd"])
    assert [it.id for it in alone.items] == [it.id for it in mixed.items if it.task == "gcd"]


def test_limit_keeps_the_first_items_of_each_task():
    full = build_suite("general-procedural", n_per_task=6, seed=0, tasks=["syllogism", "aiw"])
    cut = build_suite("general-procedural", n_per_task=6, seed=0, tasks=["syllogism", "aiw"], limit=2)
    assert [it.id for it in cut.items] == [it.id for t in cut.tasks for it in full.items if it.task == t][
        :2
    ] + [it.id for it in full.items if it.task == "aiw"][:2]


def test_task_options_reach_reasoning_gym():
    easy = build_suite(
        "math-procedural", n_per_task=5, tasks=["basic_arithmetic:min_terms=2:max_terms=2:max_digits=1"]
    )
    assert easy.tasks == ["basic_arithmetic:min_terms=2:max_terms=2:max_digits=1"]
    for it in easy.items:
        numbers = re.findall(r"\d+", it.question)
        assert len(numbers) == 2 and all(len(n) == 1 for n in numbers), it.question
    with pytest.raises(UserError, match="must look like key=value"):
        build_suite("math-procedural", n_per_task=1, tasks=["gcd:oops"])
    with pytest.raises(UserError, match="failed to build"):
        build_suite("math-procedural", n_per_task=1, tasks=["gcd:no_such_option=1"])


def test_default_tasks_and_graders():
    math = build_suite("math-procedural", n_per_task=1)
    assert {"basic_arithmetic", "chain_sum", "gsm_symbolic", "fraction_simplification", "gcd", "lcm"} <= set(
        math.tasks
    )
    graders = {it.task: it.grader for it in math.items}
    assert graders["fraction_simplification"] == "rg"  # form matters: 2/4 is not "lowest terms"
    assert graders["gcd"] == "rg+math"
    general = build_suite("general-procedural", n_per_task=1)
    assert {"syllogism", "knights_knaves"} <= set(general.tasks)


def test_fewshot_examples_come_from_another_seed_and_are_fixed():
    s = build_suite("math-procedural", n_per_task=4, seed=0, tasks=["gcd"], fewshot_k=2)
    item = s.items[0]
    shots = s.fewshot(item, 2, seed=0)
    assert len(shots) == 2 and shots == s.fewshot(item, 2, seed=0)
    assert all(ex.task == "gcd" and ex.question not in {it.question for it in s.items} for ex in shots)
    assert s.fewshot(item, 0, seed=0) == []


def test_champ_has_270_problems_with_unique_ids():
    s = build_suite("champ")
    assert len(s.items) == 270
    assert len({it.id for it in s.items}) == 270
    assert s.items[0].id == "Combinatorics/P_Combinatorics_1" and s.items[0].gold == "239"
    assert {it.grader for it in s.items} == {"math"}
    assert len(build_suite("champ", limit=2).items) == 2 * len(s.tasks)


def test_stable_int_is_process_independent():
    assert stable_int("0/gcd") == stable_int("0/gcd") != stable_int("1/gcd")
    assert stable_int("x") == 762385986  # fixed forever: changing it would change every suite


def _write(path, records):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8"
    )
    return f"jsonl:{path}"


def test_jsonl_question_answer_records(tmp_path):
    spec = _write(
        tmp_path / "math500.jsonl",
        [
            {
                "problem": "What is 1/2 + 1/4?",
                "answer": "\\frac{3}{4}",
                "unique_id": "test/1.json",
                "subject": "Algebra",
            },
            {"question": "Janet has 3 apples...", "answer": "She has 3. #### 3"},
            {"problem": "Compute 2+2.", "solution": "We get \\boxed{4}."},
        ],
    )
    s = build_suite(spec)
    assert s.name == "jsonl:math500"
    assert [it.gold for it in s.items] == ["\\frac{3}{4}", "She has 3. #### 3", "4"]
    assert s.items[0].id == "Algebra/test/1.json" and s.items[0].task == "Algebra"
    assert s.items[1].task == "math500"
    assert [it.id for it in build_suite(spec).items] == [it.id for it in s.items]


def test_jsonl_multiple_choice_records(tmp_path):
    spec = _write(
        tmp_path / "mmlu_pro.jsonl",
        [
            {
                "question": "Which is a prime?",
                "options": ["4", "6", "7", "9"],
                "answer": "C",
                "category": "math",
            },
            {"question": "Sky colour?", "choices": ["red", "blue"], "answer_index": 1},
            {"question": "Pick A", "options": {"A": "this", "B": "that"}, "answer": "(A)"},
        ],
    )
    items = build_suite(spec).items
    assert [it.gold for it in items] == ["C", "B", "A"]
    assert items[0].options == ("4", "6", "7", "9") and items[0].grader == "choice"
    assert items[2].options == ("this", "that")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "q", "answer": "1"}', "{not json"], r"bad\.jsonl:2: not valid JSON"),
        (['{"answer": "1"}'], "no question"),
        (['{"question": "q"}'], "no answer"),
        (['["a", "b"]'], "JSON object"),
        (['{"question": "q", "options": ["a", "b"], "answer": "E"}'], "letter A-B"),
        (['{"question": "q", "options": ["a"], "answer": "A"}'], "2 to 26"),
        (
            ['{"id": 1, "question": "q", "answer": "1"}', '{"id": 1, "question": "r", "answer": "2"}'],
            "duplicate",
        ),
        ([""], "holds no records"),
    ],
)
def test_jsonl_bad_input_is_a_user_error(tmp_path, lines, message):
    spec = _write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(UserError, match=message):
        build_suite(spec)


def test_bad_suite_names_and_options():
    with pytest.raises(UserError, match="unknown suite 'mmlu'"):
        build_suite("mmlu")
    with pytest.raises(UserError, match="does not exist"):
        build_suite("jsonl:/no/such/file.jsonl")
    with pytest.raises(UserError, match="unknown reasoning-gym task 'not_a_task'"):
        build_suite("math-procedural", n_per_task=1, tasks=["not_a_task"])
    with pytest.raises(UserError, match="--limit"):
        build_suite("math-procedural", n_per_task=1, tasks=["gcd"], limit=0)
    with pytest.raises(UserError, match="procedural suites only"):
        build_suite("champ", tasks=["gcd"])


def test_a_binary_jsonl_suite_is_one_line(tmp_path):
    from runkit.errors import UserError
    from spiral.evaluation.suites import jsonl_suite

    p = tmp_path / "bin.jsonl"
    p.write_bytes(b"\xff\xfe\x00\x01 not text\n")
    with pytest.raises(UserError, match="is not UTF-8 text") as e:
        jsonl_suite(str(p))
    assert "\n" not in str(e.value)
