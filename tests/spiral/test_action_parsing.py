"""Action parsing: \\boxed{} extraction and matching against legal actions."""

from __future__ import annotations

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
