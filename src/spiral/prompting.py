"""Action parsing shared by the games and agents: the last \\boxed{...} of a response is the action."""

from __future__ import annotations

import re

PARSE_MODES = ("strict", "lenient")

_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
# Formatting commands whose argument is kept: \boxed{\text{bet}} means "bet".
_WRAPPER_START = re.compile(r"\\(?:text|textbf|textit|texttt|textrm|mathrm|mathbf|mathtt|operatorname)\s*\{")
_QUOTES = "'\"`"


def _closing_braces(text: str) -> dict[int, int]:
    """Map each '{' that is closed to the index of its '}', in one pass; escaped braces (\\{ \\}) do not count."""
    pairs: dict[int, int] = {}
    open_at: list[int] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character
            continue
        if ch == "{":
            open_at.append(i)
        elif ch == "}" and open_at:
            pairs[open_at.pop()] = i
        i += 1
    return pairs


def _unwrap_commands(text: str) -> str:
    """Replace \\text{X} (and similar formatting commands) by X, in one pass; an unclosed one loses its name."""
    out: list[str] = []
    wrapper_open: list[bool] = []  # per open brace: whether it belongs to a formatting command
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            m = _WRAPPER_START.match(text, i)
            if m is not None:
                wrapper_open.append(True)
                i = m.end()
                continue
            if (
                _WRAPPER_START.match(text, i + 1) is not None
            ):  # \\text{X}: a literal backslash, then the command
                out.append(ch)
                i += 1
                continue
            out.append(text[i : i + 2])
            i += 2
            continue
        if ch == "{":
            wrapper_open.append(False)
        elif ch == "}" and wrapper_open and wrapper_open.pop():
            i += 1  # the command's closing brace goes with it
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def extract_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{...} or \\fbox{...} in `text` (\\text{} stripped), or None.

    Linear in len(text): the braces are paired once, not once per box (an unclosed box in a long reply
    would otherwise rescan the rest of the text for every box before it).
    """
    if "\\" not in text:  # fast path: no LaTeX command at all
        return None
    starts = [m.end() - 1 for m in _BOX_START.finditer(text)]
    if not starts:
        return None
    pairs = _closing_braces(text)
    for brace in reversed(starts):
        close = pairs.get(brace)
        if close is not None:
            return _unwrap_commands(text[brace + 1 : close]).strip()
    return None


def normalize_action(text: str) -> str:
    """Canonical comparison key: lower case, single spaces, no surrounding quotes or brackets."""
    s = " ".join(text.split()).lower().strip(_QUOTES).strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1].strip()
    return s


def _legal_keys(legal_actions: list[str]) -> dict[str, str]:
    """Map each legal action's comparison key to the canonical action."""
    return {normalize_action(a): a for a in legal_actions}


def _last_named(text: str, keys: dict[str, str]) -> str | None:
    """The last legal action named in free text: bracketed mentions first, then bare words."""
    if not keys:
        return None
    flat = " ".join(text.split()).lower()
    alternatives = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    bracketed = list(re.finditer(rf"\[\s*({alternatives})\s*\]", flat))
    if bracketed:
        return keys[bracketed[-1].group(1)]
    bare = list(re.finditer(rf"(?<![\w\[])({alternatives})(?![\w\]])", flat))
    return keys[bare[-1].group(1)] if bare else None


def parse_action(text: str, legal_actions: list[str], mode: str = "strict") -> str | None:
    """The legal action a response chooses, or None.

    strict (the paper's rule): the content of the last \\boxed{} must name a legal action, ignoring case,
    spaces and the square brackets (`\\boxed{bet}` means `[bet]`). lenient: as strict when there is a box;
    without a box, the last legal action named in the text.
    """
    if mode not in PARSE_MODES:
        raise ValueError(f"parse mode must be one of {PARSE_MODES}, got {mode!r}")
    keys = _legal_keys(legal_actions)
    boxed = extract_boxed(text)
    if boxed is not None:
        return keys.get(normalize_action(boxed))
    if mode == "lenient":
        return _last_named(text, keys)
    return None


def answer_region(text: str, mode: str = "strict") -> str | None:
    """The part of a response that holds the action: the last box's content; in lenient mode the whole
    text when there is no box. Games with free-form actions (negotiation) parse their tokens in it."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    return text if mode == "lenient" else None


class BoxStop:
    """A stop rule for generation: end a response once it holds a complete \\boxed{...}.

    Only tokens whose text contains "}" can close a box, so the generators ask `closes(tokens)` (one decode
    of the response so far) only for rows that just emitted one of `trigger_ids`.
    """

    def __init__(self, tokenizer) -> None:
        import torch

        self.tokenizer = tokenizer
        vocab = len(tokenizer)
        pieces = tokenizer.convert_ids_to_tokens(list(range(vocab)))
        self.trigger_ids = torch.tensor([i for i, p in enumerate(pieces) if p is not None and "}" in p])

    def closes(self, tokens: list[int]) -> bool:
        """Whether the decoded response holds a complete box."""
        return extract_boxed(self.tokenizer.decode(tokens, skip_special_tokens=True)) is not None


def plain_render(messages: list[dict[str, str]]) -> str:
    """A chat as plain text, for models without a chat template."""
    role = {"user": "Question", "assistant": "Answer", "system": "System"}
    return "\n\n".join(f"{role[m['role']]}: {m['content']}" for m in messages) + "\n\nAnswer:"
