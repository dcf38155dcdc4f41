"""The three reasoning patterns that the SPIRAL paper reports in game thoughts, tagged by transparent rules.

  decomposition   systematic decomposition: the thought lays out ordered steps (two or more sequence markers
                  such as "first", "then", "next", "finally", "step 2", or an enumerated list of two or more items)
  expected_value  expected-value calculation: it names an expectation ("expected value", "EV", "on average",
                  "odds") or it weighs a probability ("probability", "chance", "likely", "1/3", "50%") against a
                  payoff ("chip", "pot", "win", "lose", "gain", "payoff")
  case_analysis   case-by-case analysis: two or more conditional branches ("if I bet ... if they call ..."), or an
                  explicit case split ("in case", "case 1", "otherwise", "on the other hand", "either ... or")

The rules read lower-cased text with word boundaries; a thought may carry several patterns or none. They were
checked against hand-labelled thoughts written in this project (tests/spiral/evaluation/data/patterns.jsonl);
`validate` gives the per-pattern precision and recall on such a file. An LLM judge is optional
(spiral.evaluation.pattern_judge); these rules are the offline default. `spiral eval patterns`
(spiral.evaluation.patterns_cli) counts them in a run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from spiral.evaluation.stats import wilson_interval

PATTERNS = ("decomposition", "expected_value", "case_analysis")

_SEQUENCE = re.compile(
    r"\b(first(ly)?|second(ly)?|third(ly)?|then|next|after that|finally|lastly|step \d+|to start|to begin)\b"
)
_LIST_ITEM = re.compile(r"(^|\n)\s*(\d+[.):]|[-*\u2022])\s+\S")
_EXPECTATION = re.compile(r"\b(expected (value|gain|payoff|return|chips?)|expectation|ev|on average|odds)\b")
_PROBABILITY = re.compile(
    r"(\b(probability|probabilities|chances?|likely|unlikely|likelihood|percent)\b|\d+\s*%|\b\d+\s*/\s*\d+\b)"
)
_PAYOFF = re.compile(
    r"\b(chips?|pot|win|wins|winning|lose|loses|losing|loss|gain|gains|payoff|reward|profit)\b"
)
_CONDITIONAL = re.compile(r"\b(if|when|whenever|unless)\b")
_CASE_SPLIT = re.compile(r"\b(in case|case \d+|in (the|that|this) case|otherwise|on the other hand|either)\b")


def tag(text: str) -> dict[str, bool]:
    """Which of the three patterns the thought `text` shows."""
    t = text.lower()
    items = len(_LIST_ITEM.findall(t))
    steps = len(_SEQUENCE.findall(t)) + (items if items >= 2 else 0)
    expectation = bool(_EXPECTATION.search(t)) or (bool(_PROBABILITY.search(t)) and bool(_PAYOFF.search(t)))
    cases = len(_CONDITIONAL.findall(t)) >= 2 or bool(_CASE_SPLIT.search(t))
    return {"decomposition": steps >= 2, "expected_value": expectation, "case_analysis": cases}


def count(texts: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per pattern: how many of `texts` show it, their share and its 95 % Wilson interval."""
    return count_tags([tag(x) for x in texts])


def count_tags(tags: Sequence[dict[str, bool]]) -> dict[str, dict[str, float]]:
    """`count` over pattern maps already made (by `tag` or a judge)."""
    n = len(tags)
    if n == 0:
        raise ValueError("no thoughts to tag")
    out = {}
    for p in PATTERNS:
        k = sum(t[p] for t in tags)
        lo, hi = wilson_interval(k, n)
        out[p] = {"count": k, "n": n, "share": k / n, "ci_low": lo, "ci_high": hi}
    return out


def read_labelled(path: str | Path) -> list[tuple[str, dict[str, bool]]]:
    """Hand-labelled thoughts: JSON lines {"text": ..., "labels": [pattern names]}."""
    rows = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        unknown = set(row["labels"]) - set(PATTERNS)
        if unknown:
            raise ValueError(
                f"{path}:{i}: unknown pattern(s) {sorted(unknown)}; known: {', '.join(PATTERNS)}"
            )
        rows.append((row["text"], {p: p in row["labels"] for p in PATTERNS}))
    return rows


def validate(labelled: Sequence[tuple[str, dict[str, bool]]], tagger=tag) -> dict[str, dict[str, float]]:
    """Per pattern: precision, recall and accuracy of `tagger` against the labels."""
    out = {}
    for p in PATTERNS:
        tp = fp = fn = tn = 0
        for text, labels in labelled:
            got, want = tagger(text)[p], labels[p]
            tp += got and want
            fp += got and not want
            fn += want and not got
            tn += not got and not want
        out[p] = {
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "accuracy": (tp + tn) / len(labelled),
            "positives": tp + fn,
        }
    return out


def run_thoughts(path: str | Path) -> list[dict]:
    """The thoughts of each think readout of a run's eval/exploitability.jsonl: [{"step", "texts"}]."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            ex = row.get("examples")
            if isinstance(ex, dict) and ex:
                rows.append({"step": row["step"], "texts": [t for ts in ex.values() for t in ts]})
    return rows
