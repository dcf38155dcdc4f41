"""spiral.generation.think.score_thoughts: a thought's log-prob and its moves' scores equal a plain forward pass
over prompt + thought + move, whatever the batching, thought lengths (0 included) and candidate shapes."""

from __future__ import annotations

import pytest
import torch

from spiral.generation.think import score_thoughts
from spiral.model import PromptFormat


def _plain(model, ids: list[int], start: int, temperature: float) -> float:
    """Sum of log-probs of ids[start:] given what precedes each, from one unbatched forward pass."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return float(sum(logp[j - 1, ids[j]] for j in range(start, len(ids))))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_thought_and_move_scores_equal_a_plain_forward_pass(tiny, temperature):
    model, tok = tiny
    fmt = PromptFormat(tok, "auto", "compact")
    prompts = fmt.encode(
        ["You hold the King. Your move.", "You hold the Jack. Opponent bet.", "Board: empty."]
    )
    words = tok(" I hold a high card so betting wins more often than not", add_special_tokens=False)[
        "input_ids"
    ]
    boxes = [tok("\\boxed{" + m + "}", add_special_tokens=False)["input_ids"] for m in ("bet", "check", "4")]
    rows = [0, 0, 1, 2, 1]
    thoughts = [words[:5], [], words[2:9], words[:1], words]
    cands = [boxes[:2], boxes[:2], [boxes[0], [17], boxes[2]], boxes, [[5], [6, 7]]]
    got_t, got_c = score_thoughts(model, prompts, rows, thoughts, cands, temperature)
    assert got_t.shape == (5,)
    for r in range(5):
        p, th = prompts[rows[r]], thoughts[r]
        want_t = _plain(model, p + th, len(p), temperature) if th else 0.0
        assert float(got_t[r]) == pytest.approx(want_t, abs=2e-4)
        for k, c in enumerate(cands[r]):
            want = _plain(model, p + th + c, len(p) + len(th), temperature)
            assert float(got_c[r][k]) == pytest.approx(want, abs=2e-4)


def test_gradients_flow_through_thought_and_move(tiny):
    model, tok = tiny
    prompts = PromptFormat(tok, "auto", "compact").encode(["Your move."])
    t, c = score_thoughts(model, prompts, [0, 0], [[11, 12, 13], []], [[[20, 21], [22]], [[20, 21], [22]]])
    (t.sum() + sum(torch.log_softmax(s, -1)[0] for s in c)).backward()
    assert model.model.embed_tokens.weight.grad.abs().sum() > 0


def test_one_token_candidates_without_thoughts_need_no_second_pass(tiny):
    model, tok = tiny
    prompts = PromptFormat(tok, "auto", "compact").encode(["Your move."])
    t, c = score_thoughts(model, prompts, [0], [[]], [[[20], [22]]])
    p = prompts[0]
    assert float(t[0]) == 0.0
    assert float(c[0][1]) == pytest.approx(_plain(model, p + [22], len(p), 1.0), abs=2e-4)
