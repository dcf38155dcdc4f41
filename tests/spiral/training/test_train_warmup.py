"""The format warm-up: which answers are kept, how they are cut and repaired, and that fine-tuning fits them."""

from __future__ import annotations

import torch

from spiral.training.learner import collate, response_logprobs
from spiral.training.rollout import Turn
from spiral.training.warmup import (
    accepted_answer,
    build_examples,
    finetune,
    finetune_batched,
    short_decisions,
    top_up_turns,
    valid_rates,
    weighted_backward,
)

LEGAL = ["[check]", "[bet]"]


def _turn(
    text: str, strict_ok: bool = False, lenient_ok: bool = False, legal=LEGAL, prompt=(1, 2, 3)
) -> Turn:
    return Turn(
        0,
        "KuhnPoker-v2",
        0,
        list(prompt),
        [4],
        [0.0],
        text,
        legal,
        strict_ok=strict_ok,
        lenient_ok=lenient_ok,
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


def _grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_counted_pairs_give_the_gradient_of_the_batch_with_its_repeats(tiny):
    """Three distinct (prompt, answer) pairs repeated 5, 2 and 1 times: computing each once, weighted by its
    count, gives the loss and gradient of the mean token NLL over all eight, in any micro-batching."""
    model, tok = tiny
    a = build_examples([_turn("\\boxed{bet}")], tok, "strict", 0, tok.eos_token_id)[0]
    b = build_examples(
        [_turn("I check \\boxed{check}", prompt=(1, 2, 7))], tok, "strict", 0, tok.eos_token_id
    )[0]
    c = build_examples([_turn("\\boxed{check}", prompt=(5, 6))], tok, "strict", 0, tok.eos_token_id)[0]
    batch = [a] * 5 + [b] * 2 + [c]
    mb = collate(batch)
    model.zero_grad()
    plain = -(response_logprobs(model, mb) * mb["response_mask"]).sum() / mb["response_mask"].sum()
    plain.backward()
    want = _grads(model)
    for micro in (1, 2, 3):
        model.zero_grad()
        loss, distinct = weighted_backward(model, batch[::-1], micro)
        assert distinct == 3 and abs(loss - plain.item()) < 1e-5
        torch.testing.assert_close(_grads(model), want, atol=1e-6, rtol=1e-4)


def test_batched_finetune_fits_the_answers_in_one_update_per_batch(tiny):
    model, tok = tiny
    ex = build_examples([_turn("\\boxed{bet}")] * 12 + [_turn("\\boxed{check}", prompt=(4, 5))] * 4, tok,
                        "strict", 0, tok.eos_token_id)  # fmt: skip
    batch = collate(ex)
    with torch.no_grad():
        before = (response_logprobs(model, batch) * batch["response_mask"]).sum().item()
    stats = finetune_batched(model, ex, lr=1e-2, epochs=3, batch_size=8, micro_batch_size=1, seed=0)
    with torch.no_grad():
        after = (response_logprobs(model, batch) * batch["response_mask"]).sum().item()
    assert stats["sft_updates"] == 6 and stats["sft_distinct_per_update"] <= 2 and after > before + 1.0


FACING_BET = ["[call]", "[fold]"]


def test_the_cap_counts_each_decision_point_apart(smol_tokenizer):
    """'fold' at the [call] [fold] decision and 'check' at [check] [bet] have their own caps."""
    turns = [_turn(f"{i} \\boxed{{check}}") for i in range(3)] + [
        _turn(f"{i} \\boxed{{fold}}", legal=FACING_BET) for i in range(3)
    ]
    ex = build_examples(
        turns, smol_tokenizer, "strict", max_per_action=2, stop_id=smol_tokenizer.eos_token_id
    )
    assert [e.response_text for e in ex] == [
        "0 \\boxed{check}",
        "1 \\boxed{check}",
        "0 \\boxed{fold}",
        "1 \\boxed{fold}",
    ]


def test_short_decisions_are_the_points_where_a_legal_move_lacks_examples(smol_tokenizer):
    opener = [_turn(f"{i} \\boxed{{check}}", prompt=(1, i)) for i in range(2)] + [
        _turn(f"{i} \\boxed{{bet}}", prompt=(2, i)) for i in range(2)
    ]
    facing = [_turn("\\boxed{bet}", legal=FACING_BET, prompt=(3, i)) for i in range(5)]  # all illegal
    ex = build_examples(opener + facing, smol_tokenizer, "strict", 2, smol_tokenizer.eos_token_id)
    short = short_decisions(opener + facing, ex, need=2)
    assert short == facing[:2]  # the opener point is covered; at most `need` turns of the short point
    assert short_decisions(opener + facing, ex, need=3) == opener[:3] + facing[:3]


def test_top_up_samples_fresh_answers_at_the_same_decision_point(tiny):
    from spiral.agents.lm import build_policy
    from spiral.generation.base import Sampling

    model, tok = tiny
    policy = build_policy(model, tok, gen_dtype="fp32", batch_size=8, seed=0)
    prompt = tok("Facing a bet: call or fold?", add_special_tokens=False)["input_ids"]
    src = _turn("\\boxed{bet}", legal=FACING_BET, prompt=prompt)
    extra = top_up_turns(policy, [src], 3, Sampling(1.0, 1.0, 6))
    assert len(extra) == 3
    for t in extra:
        assert t.prompt_ids == prompt and t.legal_actions == FACING_BET and t.env_id == src.env_id
        assert len(t.response_ids) == len(t.old_logprobs) > 0
        assert t.response_text == tok.decode(t.response_ids, skip_special_tokens=True)


def test_a_run_with_top_up_resamples_short_decision_points(tmp_path, capsys):
    from runkit.metrics import read_metrics
    from spiral.cli import main

    args = ["train", "--preset", "tiny-test", "--threads", "1", "--steps", "1", "--out", str(tmp_path / "r"),
            "--set", "run.plots=false", "--set", "eval.every=0", "--set", "eval.at_start=false",
            "--set", "warmup.rounds=1", "--set", "warmup.accept=lenient", "--set", "warmup.max_per_action=2",
            "--set", "warmup.top_up=2"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err  # the trainer logs to stderr
    assert "top-up sampled" in err  # a random tiny model leaves decision points short of examples
    first = read_metrics(tmp_path / "r" / "metrics.jsonl")[0]
    assert "warmup/examples" in first
