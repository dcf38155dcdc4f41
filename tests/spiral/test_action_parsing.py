"""Action parsing: \\boxed{} extraction and matching against legal actions."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spiral.prompting import answer_region, extract_boxed, normalize_action, parse_action

KUHN = ["[check]", "[bet]"]
TTT = ["[0]", "[4]", "[8]"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{bet}", "bet"),
        ("\\boxed{[4]}", "[4]"),
        ("\\fbox{call}", "call"),
        ("\\boxed {  spaced  }", "spaced"),
        ("\\boxed{\\text{bet}}", "bet"),
        ("\\boxed{\\textbf{[Offer: 3 Wood -> 2 Gold]}}", "[Offer: 3 Wood -> 2 Gold]"),
        ("\\boxed{a{b}c}", "a{b}c"),
        ("\\boxed{x^{2^{3}}}", "x^{2^{3}}"),
        ("\\boxed{check} then \\boxed{bet}", "bet"),
        ("\\boxed{bet} then \\fbox{check}", "check"),
        ("\\boxed{bet} and a cut-off \\boxed{che", "bet"),
        ("no box here", None),
        ("\\boxed{never closed", None),
        ("\\boxed{\\{literal\\}}", "\\{literal\\}"),
        ("", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


def test_normalize_action_ignores_case_space_brackets_and_quotes() -> None:
    assert normalize_action("  [ BeT ] ") == "bet"
    assert normalize_action("'[bet]'") == "bet"
    assert normalize_action("Offer:  3   Wood") == "offer: 3 wood"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I will \\boxed{bet}", "[bet]"),
        ("\\boxed{[bet]}", "[bet]"),
        ("\\boxed{ BET }", "[bet]"),
        ("\\boxed{[ Check ]}", "[check]"),
        ("\\boxed{\\text{check}}", "[check]"),
        ("\\boxed{bet} no wait \\boxed{check}", "[check]"),
        ("\\boxed{fold}", None),  # not legal here
        ("[bet]", None),  # strict: no box, no action
        ("I bet", None),
    ],
)
def test_parse_action_strict(text: str, expected: str | None) -> None:
    assert parse_action(text, KUHN) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I bet", "[bet]"),
        ("first check, then [bet] is better", "[bet]"),
        ("[bet] was an option but I check", "[bet]"),  # a bracketed mention wins over bare words
        ("checking is bad, betting too", None),  # no whole-word mention
        ("\\boxed{fold} although I could bet", None),  # a box decides even in lenient mode
        ("cell 8 then 4", "[4]"),
    ],
)
def test_parse_action_lenient(text: str, expected: str | None) -> None:
    legal = TTT if "cell" in text else KUHN
    assert parse_action(text, legal, mode="lenient") == expected


def test_parse_action_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError):
        parse_action("x", KUHN, mode="fuzzy")


def test_answer_region() -> None:
    assert answer_region("say \\boxed{[Accept] thanks}") == "[Accept] thanks"
    assert answer_region("[Accept]") is None
    assert answer_region("[Accept]", mode="lenient") == "[Accept]"


@given(st.text(max_size=200), st.sampled_from(["strict", "lenient"]))
def test_parse_action_never_crashes_and_returns_legal_or_none(text: str, mode: str) -> None:
    out = parse_action(text, KUHN + TTT, mode)
    assert out is None or out in KUHN + TTT
    boxed = extract_boxed(text)
    assert boxed is None or isinstance(boxed, str)


@given(st.sampled_from(KUHN), st.text(alphabet=" \n\t", max_size=3), st.booleans())
def test_boxed_legal_action_always_parses(action: str, pad: str, upper: bool) -> None:
    inner = action.upper() if upper else action
    assert parse_action(f"reasoning {{}} \\boxed{{{pad}{inner}{pad}}}", KUHN) == action


def _lines_run(fn, *args) -> int:
    """How many Python lines `fn(*args)` executes: a measure of work that does not depend on the machine."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn(*args)
    finally:
        sys.settrace(previous)
    return count


@pytest.mark.parametrize(
    "unit", ["\\boxed{", "\\boxed{\\text{", "\\fbox{a{", "\\boxed{x} \\boxed{", "\\boxed{\\text{a}"]
)
def test_extract_boxed_work_is_linear_in_the_text(unit: str) -> None:
    # Many unclosed boxes once made every box rescan the rest of the text (a 140 KB reply took minutes).
    small = _lines_run(extract_boxed, unit * 150)
    large = _lines_run(extract_boxed, unit * 300)
    assert large <= 2.2 * small


def test_unwrapping_a_box_is_linear_in_its_content() -> None:
    def reply(n: int) -> str:
        return "\\boxed{" + "\\text{" * n + "a" + "}" * n + "}"  # nested commands

    assert _lines_run(extract_boxed, reply(600)) <= 2.2 * _lines_run(extract_boxed, reply(300))


def test_extract_boxed_unwraps_nested_and_repeated_commands() -> None:
    assert extract_boxed("\\boxed{\\text{\\textbf{a}} \\text{b}\\mathrm {c}}") == "a bc"
    assert extract_boxed("\\boxed{\\\\text{a}}") == "\\a"  # a literal backslash, then the command
    assert extract_boxed("\\boxed{\\text{}}") == ""
