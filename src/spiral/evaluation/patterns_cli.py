"""`spiral eval patterns`: count the three reasoning patterns (spiral.evaluation.patterns) in a think-mode
run's sampled thoughts, per readout, with 95 % Wilson intervals; the rule tagger by default, an LLM judge
(spiral.evaluation.pattern_judge) on request."""

from __future__ import annotations

import json
from pathlib import Path

from spiral.evaluation.patterns import PATTERNS, count_tags, read_labelled, run_thoughts, tag, validate


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
