"""Offline reasoning suites with fixed seeds and a stable id per item.

Suites:
  math-procedural      reasoning-gym math tasks, N items per task, graded by the task's scorer or math-verify
  general-procedural   reasoning-gym logic tasks, graded by the task's scorer
  champ                the 270 CHAMP competition problems (champ_dataset package), graded by math-verify
  jsonl:PATH           question/answer records (MATH-500, GSM8K, AIME exports) or multiple choice (options +
                       letter: MMLU-Pro, GPQA exports)

An item id is `task/index-hash` where the hash covers the question and the gold answer, so the same seed
gives the same ids and a different seed (different items) gives different ids; two runs pair up by id.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runkit.errors import UserError
from spiral.prompting import extract_boxed

MATH_TASKS = ("basic_arithmetic", "chain_sum", "gsm_symbolic", "fraction_simplification", "gcd", "lcm")
GENERAL_TASKS = ("syllogism", "knights_knaves", "family_relationships", "aiw", "zebra_puzzles")
# Tasks whose scorer checks the form of the answer (lowest terms, a product of primes): an equal value in
# another form is wrong there, so math-verify must not overrule the scorer.
FORM_SENSITIVE = frozenset({"fraction_simplification", "prime_factorization", "polynomial_multiplication"})
SUITES = ("math-procedural", "general-procedural", "champ", "jsonl:PATH")
FEWSHOT_SEED_OFFSET = 1_000_003  # few-shot examples come from a disjoint seed, never from the test items

_QUESTION_KEYS = ("question", "problem", "prompt", "input", "Question")
_ANSWER_KEYS = ("answer", "final_answer", "target", "gold", "expected_answer", "Answer")
_OPTION_KEYS = ("options", "choices")
_ID_KEYS = ("id", "unique_id", "question_id", "problem_id", "idx", "uid")
_TASK_KEYS = ("task", "category", "subject", "type", "src")


@dataclass(frozen=True)
class Item:
    """One benchmark question with its gold answer and how to grade it."""

    id: str
    task: str
    question: str
    gold: str
    grader: str  # see grading.GRADERS
    options: tuple[str, ...] = ()
    rg: Any = field(default=None, compare=False, repr=False)  # (reasoning-gym dataset, entry) for its scorer


@dataclass
class Suite:
    """The items of a suite, grouped by task, and a pool of few-shot examples per task."""

    name: str
    items: list[Item]
    fewshot_pool: dict[str, list[Item]] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        """Task names in order of first appearance."""
        return list(dict.fromkeys(it.task for it in self.items))

    def fewshot(self, item: Item, k: int, seed: int) -> list[Item]:
        """`k` worked examples for `item`: same task, never the item itself, fixed per (item, seed)."""
        if k <= 0:
            return []
        pool = [ex for ex in self.fewshot_pool.get(item.task, []) if ex.question != item.question]
        rng = random.Random(stable_int(f"{seed}/fewshot/{item.id}"))
        return rng.sample(pool, min(k, len(pool)))


def stable_int(text: str) -> int:
    """A 31-bit integer from text, the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


def content_hash(*parts: str) -> str:
    """Eight hex digits identifying an item's content."""
    return hashlib.sha1("\x00".join(parts).encode("utf-8")).hexdigest()[:8]


def _item_id(task: str, index: int, question: str, gold: str) -> str:
    return f"{task}/{index:04d}-{content_hash(question, gold)}"


# ---- reasoning-gym -------------------------------------------------------------------------------


def parse_task(spec: str) -> tuple[str, dict[str, Any]]:
    """'basic_arithmetic:max_terms=2:max_digits=1' -> ('basic_arithmetic', {'max_terms': 2, 'max_digits': 1})."""
    name, *parts = spec.split(":")
    options: dict[str, Any] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise UserError(f"task option {part!r} in {spec!r} must look like key=value")
        options[key.strip()] = _literal(value.strip())
    return name.strip(), options


def _literal(text: str) -> Any:
    """An int, float or bool when the text is one, else the text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _rg_items(task: str, size: int, seed: int, grader: str, fewshot: bool = False) -> list[Item]:
    """`size` items of reasoning-gym task `task` (a name with optional :key=value options) from `seed`."""
    import reasoning_gym
    from reasoning_gym.factory import DATASETS

    name, options = parse_task(task)
    if name not in DATASETS:
        raise UserError(f"unknown reasoning-gym task {name!r}; known: {', '.join(sorted(DATASETS))}")
    try:
        ds = reasoning_gym.create_dataset(name, size=size, seed=seed, **options)
    except Exception as e:  # bad options fail deep in the task's config validation
        raise UserError(f"reasoning-gym task {task!r} failed to build: {type(e).__name__}: {e}") from None
    items = []
    for i in range(size):
        entry = ds[i]
        gold = "" if entry["answer"] is None else str(entry["answer"])
        tag = "fewshot" if fewshot else task
        item_id = _item_id(tag, i, entry["question"], gold)
        items.append(Item(item_id, task, entry["question"], gold, grader, rg=(ds, entry)))
    return items


def procedural_suite(name: str, tasks: list[str], n_per_task: int, seed: int, fewshot_k: int = 0) -> Suite:
    """A reasoning-gym suite: `n_per_task` items per task, each task seeded from (seed, task name)."""
    if n_per_task < 1:
        raise UserError(f"--n-per-task must be >= 1, got {n_per_task}")
    items: list[Item] = []
    pool: dict[str, list[Item]] = {}
    for task in tasks:
        if name == "math-procedural":
            grader = "rg" if parse_task(task)[0] in FORM_SENSITIVE else "rg+math"
        else:
            grader = "rg"
        task_seed = stable_int(f"{seed}/{task}")
        items += _rg_items(task, n_per_task, task_seed, grader)
        if fewshot_k > 0:
            pool[task] = _rg_items(
                task, max(fewshot_k + 1, 8), task_seed + FEWSHOT_SEED_OFFSET, grader, fewshot=True
            )
    return Suite(name, items, pool)


# ---- CHAMP ---------------------------------------------------------------------------------------


def champ_suite() -> Suite:
    """The 270 CHAMP problems in the package's order; ids are CHAMP's own (P_Combinatorics_1, ...)."""
    try:
        import champ_dataset
    except ImportError:
        raise UserError(
            "the champ suite needs the champ-dataset package (pip install champ-dataset)"
        ) from None
    ds = champ_dataset.load("v0")
    items = [
        Item(f"{p.category}/{p.identifier}", p.category, p.text, p.raw_answer, "math")
        for p in ds.problems.values()
    ]
    # CHAMP has no separate train split: few-shot examples are other problems of the same category.
    pool: dict[str, list[Item]] = {}
    for it in items:
        pool.setdefault(it.task, []).append(it)
    return Suite("champ", items, pool)


# ---- JSONL files ---------------------------------------------------------------------------------


def _first(record: dict, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if k in record and record[k] is not None and record[k] != "":
            return record[k]
    return None


def _letter(i: int) -> str:
    return chr(ord("A") + i)


def _jsonl_item(record: Any, where: str, default_task: str, index: int) -> Item:
    """One record -> Item; raises UserError naming the file and line."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: each line must be a JSON object, got {type(record).__name__}")
    question = _first(record, _QUESTION_KEYS)
    if not isinstance(question, str):
        raise UserError(f"{where}: no question; expected one of the keys {', '.join(_QUESTION_KEYS)}")
    task = str(_first(record, _TASK_KEYS) or default_task)
    options = _first(record, _OPTION_KEYS)
    if options is not None:
        if isinstance(options, dict):  # {"A": "...", "B": "..."}
            options = [options[k] for k in sorted(options)]
        if not isinstance(options, list) or len(options) < 2 or len(options) > 26:
            raise UserError(f"{where}: 'options' must be a list of 2 to 26 answer texts")
        options = tuple(str(o) for o in options)
        answer = _first(record, ("answer", "label", "answer_letter", "answer_index", "answer_idx"))
        if isinstance(answer, int) and not isinstance(answer, bool):
            letter = _letter(answer) if 0 <= answer < len(options) else None
        elif isinstance(answer, str) and len(answer.strip().strip("()")) == 1:
            letter = answer.strip().strip("()").upper()
        else:
            letter = None
        if letter is None or not "A" <= letter <= _letter(len(options) - 1):
            raise UserError(
                f"{where}: a multiple-choice record needs 'answer' as a letter A-{_letter(len(options) - 1)} "
                f"or 'answer_index' as 0..{len(options) - 1}, got {answer!r}"
            )
        ident = _first(record, _ID_KEYS)
        item_id = (
            f"{task}/{ident}" if ident is not None else _item_id(task, index, question, "\n".join(options))
        )
        return Item(item_id, task, question, letter, "choice", options)
    answer = _first(record, _ANSWER_KEYS)
    if answer is None and isinstance(record.get("solution"), str):
        answer = extract_boxed(record["solution"])  # MATH-style records: the answer is boxed in the solution
    if answer is None or isinstance(answer, (dict, list, bool)):
        raise UserError(
            f"{where}: no answer; expected one of the keys {', '.join(_ANSWER_KEYS)} (or options + answer)"
        )
    answer = str(answer)
    ident = _first(record, _ID_KEYS)
    item_id = f"{task}/{ident}" if ident is not None else _item_id(task, index, question, answer)
    return Item(item_id, task, question, answer, "math")


def jsonl_suite(path: str) -> Suite:
    """A suite from a JSONL file of question/answer or multiple-choice records."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"suite file {p} does not exist (jsonl:PATH needs a file of JSON lines)")
    items: list[Item] = []
    seen: set[str] = set()
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"suite file {p} is not UTF-8 text (jsonl:PATH needs a file of JSON lines)") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{p}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        item = _jsonl_item(record, where, p.stem, len(items))
        if item.id in seen:
            raise UserError(f"{where}: duplicate item id {item.id!r}; ids must be unique within a file")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise UserError(f"suite file {p} holds no records")
    pool: dict[str, list[Item]] = {}
    for it in items:
        pool.setdefault(it.task, []).append(it)
    return Suite(f"jsonl:{p.stem}", items, pool)


# ---- entry point ---------------------------------------------------------------------------------


def build_suite(
    spec: str,
    n_per_task: int = 50,
    seed: int = 0,
    tasks: list[str] | None = None,
    limit: int | None = None,
    fewshot_k: int = 0,
) -> Suite:
    """Build suite `spec` (see the module doc); `limit` keeps the first items of each task."""
    if spec.startswith("jsonl:"):
        if tasks:
            raise UserError("--tasks applies to the procedural suites only")
        suite = jsonl_suite(spec[len("jsonl:") :])
    elif spec == "champ":
        if tasks:
            raise UserError("--tasks applies to the procedural suites only")
        suite = champ_suite()
    elif spec in ("math-procedural", "general-procedural"):
        default = MATH_TASKS if spec == "math-procedural" else GENERAL_TASKS
        suite = procedural_suite(spec, list(tasks or default), n_per_task, seed, fewshot_k)
    else:
        raise UserError(f"unknown suite {spec!r}; known: {', '.join(SUITES)}")
    if limit is not None:
        if limit < 1:
            raise UserError(f"--limit must be >= 1, got {limit}")
        counts: dict[str, int] = {}
        kept = []
        for it in suite.items:
            counts[it.task] = counts.get(it.task, 0) + 1
            if counts[it.task] <= limit:
                kept.append(it)
        suite.items = kept
    return suite
