"""The format warm-up: which answers are kept, how they are cut and repaired, and that fine-tuning fits them."""

from __future__ import annotations

import torch

from spiral.learner import collate, response_logprobs
from spiral.rollout import Turn
from spiral.warmup import accepted_answer, build_examples, finetune, valid_rates

LEGAL = ["[check]", "[bet]"]


def _turn(text: str, strict_ok: bool = False, lenient_ok: bool = False) -> Turn:
    return Turn(
        0, "KuhnPoker-v2", 0, [1, 2, 3], [4], [0.0], text, LEGAL, strict_ok=strict_ok, lenient_ok=lenient_ok
    )


def test_a_boxed_legal_move_is_kept_and_cut_after_its_box():
    got = accepted_answer(_turn("I hold K so \\boxed{bet} and then more rambling"), "strict")
    assert got == ("I hold K so \\boxed{bet}", "[bet]")


def test_strict_acceptance_rejects_unboxed_answers():
    assert accepted_answer(_turn("I will bet here."), "strict") is None


def test_lenient_acceptance_repairs_an_unboxed_answer_with_the_named_move():
    text, move = accepted_answer(_turn("Maybe check? No, I will [bet] now, then wait."), "lenient")
    assert move == "[bet]"
    assert text == "Maybe check? No, I will [bet]\n\\boxed{bet}"


def test_a_box_with_an_illegal_move_is_never_repaired():
    assert accepted_answer(_turn("I bet. \\boxed{raise}"), "lenient") is None


def test_build_examples_caps_answers_per_move_and_ends_them_with_the_stop_token(smol_tokenizer):
    turns = [_turn(f"take {i} \\boxed{{check}}") for i in range(5)] + [
        _turn("\\boxed{bet}"),
        _turn("no idea"),
    ]
    eos = smol_tokenizer.eos_token_id
    ex = build_examples(turns, smol_tokenizer, "strict", max_per_action=2, stop_id=eos)
    assert [e.response_text for e in ex] == ["take 0 \\boxed{check}", "take 1 \\boxed{check}", "\\boxed{bet}"]
    assert all(e.response_ids[-1] == eos and e.prompt_ids == [1, 2, 3] for e in ex)


def test_valid_rates():
    rates = valid_rates([_turn("a", True, True), _turn("b", False, True), _turn("c"), _turn("d")])
    assert rates == {"valid_rate_strict": 0.25, "valid_rate_lenient": 0.5}


def test_finetune_raises_the_likelihood_of_the_kept_answers(tiny):
    model, tok = tiny
    ex = build_examples([_turn("\\boxed{bet}")] * 4, tok, "strict", 0, tok.eos_token_id)
    batch = collate(ex)
    with torch.no_grad():
        before = (response_logprobs(model, batch) * batch["response_mask"]).sum().item()
    stats = finetune(model, ex, lr=1e-2, epochs=3, micro_batch_size=2, seed=0)
    with torch.no_grad():
        after = (response_logprobs(model, batch) * batch["response_mask"]).sum().item()
    assert stats["sft_updates"] == 6 and after > before + 1.0
