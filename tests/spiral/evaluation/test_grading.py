"""Graders accept equivalent right answers and reject wrong ones."""

import pytest

from spiral.evaluation.grading import (
    choice_letter,
    extract_answer,
    gold_candidates,
    grade,
    is_correct,
    math_equal,
    normalize_text,
)


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("0.5", "1/2"),
        ("\\frac{1}{2}", "0.5"),
        ("\\frac12", "1/2"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("2^{n-1}", "2^(n-1)"),  # CHAMP writes ASCII math
        ("\\sqrt{2}", "sqrt(2)"),
        ("x^2-1", "(x+1)(x-1)"),
        ("-4", "-4"),
        ("1,000", "1000"),
        ("\\text{No}", "No"),
        ("no", "No"),
        ("252", "@@C(10, 5)@@, or equivalently @@252@@"),
        ("\\binom{10}{5}", "@@C(10, 5)@@, or equivalently @@252@@"),
        ("98", "98 values"),
        ("100", "100 (i.e., all values)"),
        ("72", "Natalia sold 48/2 = 24 clips in May. #### 72"),
        ("3", "The limit exists and is equal to 3"),  # CHAMP's descriptive answers
        ("DNE", "The limit does not exist"),
        ("none", "No such values"),
        ("\\text{No integer solutions}", "No integer solutions"),
    ],
)
def test_math_equal_accepts_equivalent_forms(answer, gold):
    assert math_equal(answer, gold)


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("0.6", "1/2"),
        ("238", "239"),
        ("2^{n}", "2^(n-1)"),
        ("Yes", "No"),
        ("253", "@@C(10, 5)@@, or equivalently @@252@@"),
        ("", "3"),
        (None, "3"),
        ("71", "clips #### 72"),
        ("5", "No integer solutions"),
        ("impossible", "No"),  # a one-word yes/no gold is not a "none exists" sentence
        ("1", "The limit exists and is equal to 3"),
    ],
)
def test_math_equal_rejects_wrong_answers(answer, gold):
    assert not math_equal(answer, gold)


def test_gold_candidates_split_champ_markup_and_leading_numbers():
    assert gold_candidates("@@C(10, 5)@@, or equivalently @@252@@")[:2] == ["C(10, 5)", "252"]
    assert "98" in gold_candidates("98 values")
    assert "2" not in gold_candidates("2^(n-1)")  # an exponent is not a leading number


def test_extract_answer_takes_the_last_box_only():
    assert extract_answer("first \\boxed{1} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_answer("The answer is 7.") is None


def test_lenient_extraction_falls_back_to_stated_answer_then_last_number():
    assert extract_answer("So the answer is 12.\n\nMore text 99", "lenient") == "12"
    assert extract_answer("we get 3 and then 5", "lenient") == "5"
    assert extract_answer("\\boxed{7} and 8", "lenient") == "7"
    assert extract_answer("no digits here", "lenient") is None
    assert extract_answer("put it in \\boxed{}. The answer is 4.", "lenient") == "4"


def test_choice_letter_forms():
    options = ["red", "green", "blue"]
    assert choice_letter("B", options) == "B"
    assert choice_letter("(c)", options) == "C"
    assert choice_letter("A. red", options) == "A"
    assert choice_letter("green", options) == "B"
    assert choice_letter("D", options) is None
    assert grade("\\text{B}", "B", "choice", options) == 1.0
    assert grade("A", "B", "choice", options) == 0.0


def test_text_grader_normalises_case_and_punctuation():
    assert normalize_text("\\text{Mother-in-law}.") == "mother-in-law"
    assert grade("Mother-in-law", "mother-in-law", "text") == 1.0


def test_reasoning_gym_scorer_and_math_fallback():
    import reasoning_gym

    ds = reasoning_gym.create_dataset("basic_arithmetic", size=3, seed=1)
    entry = ds[0]
    gold = entry["answer"]
    assert is_correct(grade(gold, gold, "rg", rg=(ds, entry)))
    assert not is_correct(grade(str(int(gold) + 1), gold, "rg", rg=(ds, entry)))
    # The scorer gives partial credit to "-4.0"-style answers; math-verify equivalence gives full marks.
    as_float = f"{float(gold):.1f}"
    assert not is_correct(grade(as_float, gold, "rg", rg=(ds, entry)))
    assert is_correct(grade(as_float, gold, "rg+math", rg=(ds, entry)))
    assert grade(None, gold, "rg+math", rg=(ds, entry)) == 0.0


def test_scorer_exceptions_count_as_wrong():
    class Exploding:
        def score_answer(self, answer, entry):
            raise ValueError("int() of junk")

    assert grade("junk", "1", "rg", rg=(Exploding(), {})) == 0.0


def test_unknown_grader_is_an_error():
    with pytest.raises(ValueError, match="unknown grader"):
        grade("1", "1", "nope")
