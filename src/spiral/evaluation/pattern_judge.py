"""An optional LLM judge for the three reasoning patterns (spiral.evaluation.patterns), through the project's
OpenAI-compatible API agent (spiral.agents.api_agent: key from the environment, endpoint checks, retries).

The judge is asked for a JSON list of the pattern names the thought shows. A reply that is not such a list is
an ApiError naming the thought's index, never a silent "no pattern".
"""

from __future__ import annotations

import json
import re

from spiral.agents.api_agent import ApiAgent, ApiError
from spiral.evaluation.patterns import PATTERNS

JUDGE_PROMPT = (
    "You label the reasoning in a short game-playing thought. Patterns:\n"
    "decomposition: the thought lays out ordered steps (first ..., then ..., finally ...; or a numbered list).\n"
    "expected_value: it computes or weighs an expectation: a probability or chance against a payoff (chips, "
    "pot, winning, losing), or names an expected value or odds.\n"
    "case_analysis: it splits into cases: two or more conditional branches (if ..., if ...), or 'otherwise', "
    "'on the other hand', 'either ... or'.\n"
    'Reply with only a JSON list of the pattern names it shows, for example ["case_analysis"] or [].'
)
_LIST = re.compile(r"\[[^\[\]]*\]")


def parse_labels(reply: str) -> dict[str, bool]:
    """The judge's JSON list (the last one in the reply) as a pattern -> bool map."""
    found = _LIST.findall(reply)
    if not found:
        raise ValueError("no JSON list in the reply")
    names = json.loads(found[-1])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("the list holds something other than pattern names")
    unknown = set(names) - set(PATTERNS)
    if unknown:
        raise ValueError(f"unknown pattern(s) {sorted(unknown)}")
    return {p: p in names for p in PATTERNS}


class PatternJudge:
    """`judge(text)` -> pattern map, the same shape as spiral.evaluation.patterns.tag."""

    def __init__(
        self, model: str, base_url: str, key_env: str = "SPIRAL_API_KEY", timeout: float = 60.0
    ) -> None:
        self.agent = ApiAgent(model, base_url, key_env=key_env, temperature=0.0, top_p=1.0, max_tokens=64,
                              timeout=timeout, system_prompt=JUDGE_PROMPT)  # fmt: skip
        self.calls = 0

    def __call__(self, text: str) -> dict[str, bool]:
        self.calls += 1
        reply = self.agent.complete(f"Thought:\n{text}")
        try:
            return parse_labels(reply)
        except (ValueError, json.JSONDecodeError) as e:
            raise ApiError(
                f"the judge's reply to thought {self.calls} is not a list of patterns ({e})"
            ) from None
