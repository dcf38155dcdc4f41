"""Answer grading for reasoning benchmarks: math-verify equivalence, reasoning-gym scorers, multiple choice.

The model's answer is the content of the last \\boxed{} of its response (the paper's protocol); a response
without a box is wrong. Graders take that extracted answer, never the whole response, so a number that
merely appears in the reasoning does not count.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from spiral.prompting import extract_boxed

GRADERS = ("math", "rg", "rg+math", "choice", "text")
EXTRACTIONS = ("boxed", "lenient")
RG_CORRECT = 0.999  # reasoning-gym scores are in [0, 1] and give partial credit; only full marks count

_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
_LEADING_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?(?:/\d+)?)\b(?!\s*[-+*/^]|\()")
_MARKED = re.compile(r"@@(.+?)@@")
_STATED_NUMBER = re.compile(r"\b(?:equal to|is|of)\s+(-?\d+(?:\.\d+)?)\s*$")  # "the limit ... is equal to 3"
# Gold sentences that say "there is none" (CHAMP: "No integer solutions", "The limit does not exist"), and
# the answers that say the same.
_NONE_GOLD = re.compile(r"\b(?:no|none|not possible|does not exist)\b", re.IGNORECASE)
_NONE_ANSWER = re.compile(
    r"^(?:no\b|none\b|there (?:is|are) no\b|dne$|\\emptyset$|\\varnothing$|∅$)|does not exist|doesn't exist|"
    r"not possible|impossible"
)
# ASCII math in gold answers (CHAMP writes sqrt(2), ±) -> the LaTeX that math-verify reads.
_ASCII_TO_LATEX = (
    ("±", "\\pm "),
    ("−", "-"),
    ("×", "\\times "),
    ("≤", "\\le "),
    ("≥", "\\ge "),
    ("·", "\\cdot "),
)


_ANSWER_IS = re.compile(
    r"answer\s*(?:is|:)\s*:?\s*\$?([^\n$]+?)\$?\s*(?:\.\s|\.?$|\n)", re.IGNORECASE | re.MULTILINE
)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")


def extract_answer(response: str, mode: str = "boxed") -> str | None:
    """The final answer of a response: the content of its last \\boxed{}, or None.

    mode "lenient" (not the paper's protocol; for small models that rarely box) falls back to the last
    "the answer is X", then to the last number of the response.
    """
    boxed = extract_boxed(response)
    if boxed or mode == "boxed":  # lenient also looks past an empty \boxed{} (small models copy the hint)
        return boxed
    if mode != "lenient":
        raise ValueError(f"answer extraction must be one of {EXTRACTIONS}, got {mode!r}")
    stated = _ANSWER_IS.findall(response)
    if stated:
        return stated[-1].strip()
    numbers = _NUMBER.findall(response)
    return numbers[-1].replace(",", "") if numbers else None


def normalize_text(text: str) -> str:
    """Comparison key for short text answers: \\text{} unwrapped, lower case, no spaces or end punctuation."""
    s = _TEXT_WRAPPER.sub(r"\1", text)
    s = s.replace("$", "").strip().strip(".").strip()
    return " ".join(s.lower().split())


def _as_latex(expr: str) -> str:
    """Gold text as a $...$ math string (ASCII operators mapped to LaTeX) unless it is already marked up."""
    s = expr.strip()
    for a, b in _ASCII_TO_LATEX:
        s = s.replace(a, b)
    if "$" in s or "\\boxed" in s or "\\(" in s or "\\[" in s:
        return s
    return f"${s}$"


@lru_cache(maxsize=4096)
def _parse_gold(expr: str) -> tuple:
    from math_verify import parse

    return tuple(parse(_as_latex(expr)))


@lru_cache(maxsize=4096)
def _parse_pred(answer: str) -> tuple:
    from math_verify import parse

    # Boxed so that math-verify reads the whole answer as one expression.
    return tuple(parse("\\boxed{" + answer + "}"))


def gold_candidates(gold: str) -> list[str]:
    """The forms a gold answer accepts: CHAMP's @@-marked expressions, a GSM8K '#### N' tail, a leading number.

    'C(10, 5), or equivalently 252' marks both forms with @@; '98 values' accepts 98.
    """
    gold = gold.strip()
    if "####" in gold:  # GSM8K exports keep the worked solution before '#### answer'
        gold = gold.rsplit("####", 1)[1].strip()
    marked = _MARKED.findall(gold)
    out = [m.strip() for m in marked] if marked else [gold]
    plain = gold.replace("@@", "")
    if plain not in out:
        out.append(plain)
    for m in (_LEADING_NUMBER.match(plain), _STATED_NUMBER.search(plain)):
        if m and m.group(1) not in out:
            out.append(m.group(1))
    return out


def says_none(answer: str, gold: str) -> bool:
    """Whether a descriptive gold (more than one word) says nothing exists and the answer says so too."""
    return (
        len(gold.split()) > 1
        and bool(_NONE_GOLD.search(gold))
        and bool(_NONE_ANSWER.search(normalize_text(answer)))
    )


def math_equal(answer: str | None, gold: str) -> bool:
    """Whether `answer` equals any accepted form of `gold`: exact text first, then math-verify equivalence."""
    if answer is None or not answer.strip():
        return False
    from math_verify import verify

    cands = gold_candidates(gold)
    key = normalize_text(answer)
    if any(key == normalize_text(c) for c in cands) or says_none(answer, gold):
        return True
    pred = list(_parse_pred(answer.strip()))
    if not pred:
        return False
    for cand in cands:
        parsed = list(_parse_gold(cand))
        if parsed and verify(parsed, pred):
            return True
    return False


def choice_letter(answer: str | None, options: list[str]) -> str | None:
    """The option letter an answer names: 'B', '(B)', 'B) ...', or the full text of an option."""
    if answer is None:
        return None
    letters = [chr(ord("A") + i) for i in range(len(options))]
    s = normalize_text(answer).upper()
    m = re.match(r"^\(?([A-Z])\)?(?:[.:)\s]|$)", s)
    if m and m.group(1) in letters:
        return m.group(1)
    for letter, option in zip(letters, options, strict=True):
        if normalize_text(option).upper() == s:
            return letter
    return None


def rg_score(answer: str | None, entry: dict[str, Any], dataset: Any) -> float:
    """A reasoning-gym dataset's own score of `answer` for `entry` (0 when its scorer fails on odd input)."""
    try:
        return float(dataset.score_answer(answer, entry))
    except Exception:  # scorers parse model text with int()/float() and raise on junk
        return 0.0


def grade(
    answer: str | None, gold: str, grader: str, options: list[str] | None = None, rg: tuple | None = None
) -> float:
    """Score in [0, 1] of one extracted answer.

    grader: math (math-verify), text (normalised string match), choice (option letter), rg (the
    reasoning-gym scorer; `rg` is (dataset, entry)), rg+math (full marks from either).
    """
    if grader == "math":
        return float(math_equal(answer, gold))
    if grader == "text":
        return float(answer is not None and normalize_text(answer) == normalize_text(gold))
    if grader == "choice":
        return float(choice_letter(answer, options or []) == gold.strip().upper())
    if grader in ("rg", "rg+math"):
        if rg is None:
            raise ValueError(f"grader {grader!r} needs the reasoning-gym (dataset, entry)")
        score = rg_score(answer, rg[1], rg[0])
        if score < RG_CORRECT and grader == "rg+math" and math_equal(answer, gold):
            return 1.0
        return score
    raise ValueError(f"unknown grader {grader!r}; known: {GRADERS}")


def is_correct(score: float) -> bool:
    """Full marks."""
    return score >= RG_CORRECT
