"""`spiral eval reasoning`: accuracy on an offline suite, n samples per item, resumable per-item JSONL.

Prompt as the paper: the question, then "reason step by step, final answer in \\boxed{}". The output folder
holds config.json (what was evaluated and how), results.jsonl (one line per item and sample) and
summary.json. A rerun with the same folder skips finished lines; a different config is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from runkit.errors import UserError
from spiral.evaluation.grading import EXTRACTIONS, extract_answer, grade, is_correct
from spiral.evaluation.stats import bootstrap_mean, wilson_interval
from spiral.evaluation.suites import MATH_TASKS, SUITES, Item, Suite

PROMPT_VERSION = 1  # bump when the prompt text changes: resumed runs then refuse to mix
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CHOICE_INSTRUCTION = "Please reason step by step, and put the letter of your final answer within \\boxed{}."
RESULTS = "results.jsonl"
# Keys of config.json that must match for a folder to be resumed (`limit` may grow between runs).
IDENTITY = (
    "model", "suite", "tasks", "n_per_task", "seed", "n", "temperature", "top_p", "max_new_tokens", "fewshot",
    "extract", "prompt_version",
)  # fmt: skip


class TextGenerator(Protocol):
    """What the evaluator needs from a model; tests pass a deterministic fake."""

    def render(self, messages: list[dict[str, str]]) -> str:
        """Prompt text for a chat (the model's chat template, or a plain fallback)."""

    def generate(
        self, prompts: list[str], n: int, temperature: float, top_p: float, max_new_tokens: int, seed: int
    ) -> list[list[str]]:
        """`n` sampled completions per prompt."""


def user_text(item: Item) -> str:
    """The user turn of an item: question, options for multiple choice, then the paper's instruction."""
    if item.options:
        opts = "\n".join(f"{chr(ord('A') + i)}. {o}" for i, o in enumerate(item.options))
        return f"{item.question.strip()}\n\nOptions:\n{opts}\n\n{CHOICE_INSTRUCTION}"
    return f"{item.question.strip()}\n\n{INSTRUCTION}"


def messages_for(item: Item, shots: Sequence[Item]) -> list[dict[str, str]]:
    """Chat messages: few-shot pairs (answer boxed) then the item."""
    msgs: list[dict[str, str]] = []
    for ex in shots:
        msgs.append({"role": "user", "content": user_text(ex)})
        msgs.append({"role": "assistant", "content": f"The final answer is \\boxed{{{ex.gold}}}."})
    msgs.append({"role": "user", "content": user_text(item)})
    return msgs


def prompt_hash(prompt: str) -> str:
    """Twelve hex digits of the exact prompt text (results record it; a changed prompt is re-evaluated)."""
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:12]


# ---- output folder -------------------------------------------------------------------------------


def open_output(out: Path, config: dict[str, Any]) -> dict[tuple[str, int], dict]:
    """Create or reopen `out`; return finished lines keyed by (item id, sample). Refuses a different config, and
    a folder this project did not write."""
    from runkit.rundir import claim_output

    claim_output(out)
    cfg_path = out / "config.json"
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise UserError(
                f"{cfg_path} is not valid JSON; delete the folder or choose another --out"
            ) from None
        diff = [k for k in IDENTITY if old.get(k) != config.get(k)]
        if diff:
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in diff)
            raise UserError(f"{out} holds results of a different evaluation ({shown}); choose another --out")
    from runkit.io import atomic_write_json

    atomic_write_json(cfg_path, config)
    return read_results(out / RESULTS, repair=True)


def read_results(path: Path, repair: bool = False) -> dict[tuple[str, int], dict]:
    """Lines of results.jsonl keyed by (item, sample); a torn last line is dropped (and cut off if `repair`)."""
    done: dict[tuple[str, int], dict] = {}
    if not path.exists():
        return done
    data = path.read_bytes()
    if repair and data and not data.endswith(b"\n"):  # a crash mid-write: cut the partial line
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    for line in data.decode("utf-8").splitlines():
        try:
            row = json.loads(line)
            done[(row["item"], int(row["sample"]))] = row
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return done


def _append(path: Path, rows: list[dict]) -> None:
    import os

    with path.open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


# ---- evaluation ----------------------------------------------------------------------------------


def evaluate(
    generator: TextGenerator,
    suite: Suite,
    out: str | Path,
    config: dict[str, Any],
    batch_items: int = 8,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Generate, grade and append every missing (item, sample) of `suite`; return (and write) the summary.

    `config` holds at least n, temperature, top_p, max_new_tokens, seed and fewshot.
    """
    from runkit.io import atomic_write_json
    from runkit.progress import ProgressBar

    out = Path(out)
    config = {
        "extract": "boxed",
        **config,
        "suite": config.get("suite", suite.name),
        "prompt_version": PROMPT_VERSION,
    }
    done = open_output(out, config)
    n = int(config["n"])
    prompts = {it.id: generator.render(messages_for(it, suite.fewshot(it, config["fewshot"], config["seed"])))
               for it in suite.items}  # fmt: skip
    hashes = {k: prompt_hash(p) for k, p in prompts.items()}
    todo = [
        it for it in suite.items
        if any(done.get((it.id, j), {}).get("prompt_hash") != hashes[it.id] for j in range(n))
    ]  # fmt: skip
    count_tokens = getattr(generator, "count_tokens", None)
    with ProgressBar(len(suite.items), f"{suite.name}", completed=len(suite.items) - len(todo),
                     enabled=progress, every=1) as bar:  # fmt: skip
        for start in range(0, len(todo), batch_items):
            batch = todo[start : start + batch_items]
            t0 = time.perf_counter()
            texts = generator.generate(
                [prompts[it.id] for it in batch], n, config["temperature"], config["top_p"],
                config["max_new_tokens"], config["seed"] + start,
            )  # fmt: skip
            seconds = time.perf_counter() - t0
            rows = []
            for k, (it, responses) in enumerate(zip(batch, texts, strict=True)):
                tokens = _token_counts(generator, responses, k, count_tokens)
                for j, (resp, ntok) in enumerate(zip(responses, tokens, strict=True)):
                    answer = extract_answer(resp, config["extract"])
                    score = grade(answer, it.gold, it.grader, list(it.options), it.rg)
                    rows.append({
                        "item": it.id, "task": it.task, "sample": j, "prompt_hash": hashes[it.id],
                        "gold": it.gold, "answer": answer, "score": score, "correct": is_correct(score),
                        "response": resp, "response_chars": len(resp), "response_tokens": ntok,
                        "gen_s": seconds / (len(batch) * n),
                    })  # fmt: skip
            _append(out / RESULTS, rows)
            for r in rows:
                done[(r["item"], r["sample"])] = r
            acc = sum(r["correct"] for r in rows) / max(len(rows), 1)
            bar.update(len(batch), {"acc": acc, "s_per_item": seconds / len(batch)})
    summary = summarize(suite, done, n, config.get("seed", 0))
    summary["config"] = config
    atomic_write_json(out / "summary.json", summary)
    return summary


def _token_counts(generator: Any, responses: list[str], k: int, count_tokens: Any) -> list[int | None]:
    """Generated token counts of prompt k of the last call (the sampler's), else re-tokenised, else None."""
    last = getattr(generator, "last_token_counts", None)
    if last is not None and k < len(last) and len(last[k]) == len(responses):
        return list(last[k])
    return count_tokens(responses) if count_tokens else [None] * len(responses)


def summarize(suite: Suite, done: dict[tuple[str, int], dict], n: int, seed: int = 0) -> dict[str, Any]:
    """Per-task and overall accuracy: mean over items of the per-item mean over samples, with intervals.

    `ci` is a bootstrap over items (samples of one item are correlated); `wilson` treats every sample as
    independent and is narrower; both are 95 %.
    """

    per_item: dict[str, list[float]] = {}
    rows_by_task: dict[str, list[dict]] = {}
    for it in suite.items:
        rows = [done[(it.id, j)] for j in range(n) if (it.id, j) in done]
        if len(rows) == n:
            per_item.setdefault(it.task, []).append(sum(r["correct"] for r in rows) / n)
            rows_by_task.setdefault(it.task, []).extend(rows)
    tasks = {t: _stats(per_item[t], rows_by_task[t], seed) for t in suite.tasks if t in per_item}
    all_items = [v for t in per_item for v in per_item[t]]
    all_rows = [r for t in rows_by_task for r in rows_by_task[t]]
    overall = _stats(all_items, all_rows, seed) if all_items else {"items": 0}
    if tasks:
        overall["macro_accuracy"] = sum(t["accuracy"] for t in tasks.values()) / len(tasks)
        overall["macro_ci"] = list(bootstrap_mean([t["accuracy"] for t in tasks.values()], seed=seed)[1:])
    return {"suite": suite.name, "samples_per_item": n, "overall": overall, "tasks": tasks}


def _stats(item_means: list[float], rows: list[dict], seed: int) -> dict[str, Any]:

    mean, lo, hi = bootstrap_mean(item_means, seed=seed)
    correct = sum(r["correct"] for r in rows)
    toks = [r["response_tokens"] for r in rows if r.get("response_tokens") is not None]
    return {
        "items": len(item_means),
        "samples": len(rows),
        "accuracy": mean,
        "ci": [lo, hi],
        "wilson": list(wilson_interval(correct, len(rows))),
        "boxed_rate": sum(r["answer"] is not None for r in rows) / len(rows),
        "mean_response_chars": sum(r["response_chars"] for r in rows) / len(rows),
        "mean_response_tokens": sum(toks) / len(toks) if toks else None,
        "seconds_per_item": sum(r.get("gen_s", 0.0) for r in rows) / len(item_means),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table of a summary."""
    lines = [
        f"{'task':<26} {'items':>5} {'acc':>6}  {'95% CI (items)':>16} {'boxed':>6} {'tokens':>7} {'s/item':>7}"
    ]
    rows = [*summary["tasks"].items(), ("overall", summary["overall"])]
    for name, s in rows:
        if not s.get("items"):
            continue
        tok = s.get("mean_response_tokens")
        lines.append(
            f"{name:<26} {s['items']:>5} {s['accuracy']:>6.3f}  [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]   "
            f"{s['boxed_rate']:>6.2f} {'-' if tok is None else str(round(tok)):>7} {s['seconds_per_item']:>7.2f}"
        )
    return "\n".join(lines)


# ---- CLI -----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `spiral eval reasoning`."""
    parser.add_argument(
        "--model", required=True, help="smollm2-135m-instruct, tiny, or a model/checkpoint/run folder"
    )
    parser.add_argument("--suite", required=True, help=f"one of {', '.join(SUITES)}")
    parser.add_argument("--out", help="output folder (default runs/eval/reasoning/<model>/<suite>)")
    parser.add_argument("--n", type=int, default=4, help="samples per item (paper: 4)")
    parser.add_argument("--n-per-task", type=int, default=50, help="items per task of a procedural suite")
    parser.add_argument("--limit", type=int, help="evaluate only the first LIMIT items of each task")
    parser.add_argument(
        "--tasks",
        help=f"comma-separated reasoning-gym tasks, each with optional :key=value options "
        f"(default math: {','.join(MATH_TASKS)})",
    )
    parser.add_argument("--seed", type=int, default=0, help="suite and sampling seed")
    parser.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (paper: 0.6)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (paper: 0.95)")
    parser.add_argument("--max-new-tokens", type=int, default=1024, help="generation budget per response")
    parser.add_argument("--fewshot", type=int, default=0, help="worked examples before each question")
    parser.add_argument("--batch-size", type=int, default=8, help="items per generation call (x n sequences)")
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on GPU, fp32 on CPU"
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads for torch (1 is fastest on a busy shared machine)"
    )
    parser.add_argument(
        "--extract", default="boxed", choices=EXTRACTIONS,
        help="boxed: the last \\boxed{} (the paper); lenient: else 'the answer is X', else the last number",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _default_out(model: str, suite: str) -> Path:
    """RUN/eval/reasoning/<suite> for a run folder, else runs/eval/reasoning/<model>/<suite>."""
    from spiral.evaluation.games import default_out

    name = Path(suite[len("jsonl:") :]).stem if suite.startswith("jsonl:") else suite
    return default_out(model, "reasoning") / "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def run(args: argparse.Namespace) -> int:
    """Build the suite, load the model, evaluate, print the summary."""
    from spiral.evaluation.suites import build_suite

    if args.n < 1 or args.max_new_tokens < 1 or args.batch_size < 1:
        raise UserError("--n, --max-new-tokens and --batch-size must be >= 1")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    suite = build_suite(args.suite, args.n_per_task, args.seed, tasks, args.limit, args.fewshot)
    from spiral.evaluation.generation import load_generator

    generator = load_generator(args.model, args.dtype, args.batch_size * args.n, args.threads)
    config = {
        "model": args.model, "suite": args.suite, "tasks": tasks, "n_per_task": args.n_per_task,
        "seed": args.seed, "n": args.n, "temperature": args.temperature, "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens, "fewshot": args.fewshot, "extract": args.extract,
        "limit": args.limit,
    }  # fmt: skip
    out = Path(args.out) if args.out else _default_out(args.model, args.suite)
    summary = evaluate(generator, suite, out, config, batch_items=args.batch_size)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    print(f"results: {out / RESULTS}", flush=True)
    return 0
