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
(spiral.evaluation.pattern_judge); these rules are the offline default.
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
    steps = len(_SEQUENCE.findall(t)) + (len(_LIST_ITEM.findall(t)) if len(_LIST_ITEM.findall(t)) >= 2 else 0)
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


def add_arguments(parser) -> None:
    """`spiral eval patterns`."""
    parser.add_argument("run", help="a think-mode run folder (its eval/exploitability.jsonl readouts) or a JSON "
                        "lines file of thoughts ({'text': ...} per line)")  # fmt: skip
    parser.add_argument("--steps", default="first,last", help="readouts to tag: first,last (default), all, or steps "
                        "such as 0,60")  # fmt: skip
    parser.add_argument("--validate", metavar="FILE", help="also print the tagger's precision / recall on "
                        "hand-labelled thoughts ({'text', 'labels'} per line)")  # fmt: skip
    parser.add_argument(
        "--judge-model", help="tag with an LLM judge through an OpenAI-compatible endpoint instead"
    )
    parser.add_argument("--judge-url", help="the judge's base URL (e.g. http://localhost:8000/v1)")
    parser.add_argument(
        "--key-env", default="SPIRAL_API_KEY", help="environment variable holding the judge's key"
    )
    parser.add_argument("--out", help="write the counts as JSON here")


def _select(rows: list[dict], steps: str) -> list[dict]:
    if steps == "all":
        return rows
    if steps == "first,last":
        return [rows[0], rows[-1]] if len(rows) > 1 else rows
    try:
        wanted = [int(x) for x in steps.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--steps {steps!r}: give first,last, all, or step numbers such as 0,60") from None
    have = {r["step"]: r for r in rows}
    missing = [s for s in wanted if s not in have]
    if missing:
        raise ValueError(f"no think readout at step(s) {missing}; readouts at {sorted(have)}")
    return [have[s] for s in wanted]


def _line(name: str, stats: dict[str, float]) -> str:
    return f"  {name:15s} {stats['count']:4d} / {stats['n']:4d} = {stats['share']:.3f} " \
           f"[{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]"  # fmt: skip


def run(args) -> int:
    """Count the patterns per readout (or in a file of thoughts); print them with 95 % Wilson intervals."""
    from runkit.errors import UserError

    src = Path(args.run)
    if src.is_dir():
        log = src / "eval" / "exploitability.jsonl"
        if not log.is_file():
            raise UserError(f"{src} has no eval/exploitability.jsonl; pass a think-mode run folder")
        rows = run_thoughts(log)
        if not rows:
            raise UserError(
                f"{log} holds no sampled thoughts (a constrained run, or a run before think mode)"
            )
        try:
            rows = _select(rows, args.steps)
        except ValueError as e:
            raise UserError(str(e)) from None
    elif src.is_file():
        try:
            texts = [json.loads(x)["text"] for x in src.read_text(encoding="utf-8").splitlines() if x.strip()]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UserError(f"{src}: each line must be a JSON object with a 'text' ({e})") from None
        rows = [{"step": None, "texts": texts}]
    else:
        raise UserError(f"{src} does not exist")
    tagger = tag
    if args.judge_model:
        if not args.judge_url:
            raise UserError("--judge-model needs --judge-url")
        from spiral.evaluation.pattern_judge import PatternJudge

        tagger = PatternJudge(args.judge_model, args.judge_url, args.key_env)
    result = []
    for r in rows:
        if not r["texts"]:
            raise UserError(f"the readout at step {r['step']} holds no thoughts")
        tags = [tagger(t) for t in r["texts"]]
        counts = count_tags(tags)
        result.append({"step": r["step"], "counts": counts})
        print(f"step {r['step']}:" if r["step"] is not None else f"{src}:")
        for p in PATTERNS:
            print(_line(p, counts[p]))
    if args.validate:
        try:
            v = validate(read_labelled(args.validate), tagger)
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"--validate {args.validate}: {e}") from None
        print(f"tagger against {args.validate}:")
        for p, s in v.items():
            print(f"  {p:15s} precision {s['precision']:.2f} recall {s['recall']:.2f} accuracy {s['accuracy']:.2f} "
                  f"({s['positives']} labelled positive)")  # fmt: skip
        result.append({"validation": v})
    if args.out:
        from runkit.io import atomic_write_text

        atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    return 0
