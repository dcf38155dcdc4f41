"""Think, then move: thoughts cut at the marker, legal moves after them, the learner's log-probs equal to the
behaviour log-probs before an update, the sampled-thought readout and its diagnostics, and a short run."""

from __future__ import annotations

import json

import pytest
import torch

from spiral.agents.lm import build_policy, stop_ids
from spiral.evaluation.exploitability import think_readout
from spiral.evaluation.thoughts import card_accuracy
from spiral.generation.base import Sampling
from spiral.generation.think import cut_thought, score_thought_tokens, score_thoughts
from spiral.model import PromptFormat

OBS = ["You hold the King. Your move.", "You hold the Jack. Opponent bet."]
LEGAL = [["[check]", "[bet]"], ["[call]", "[fold]"]]


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_the_thought_ends_before_the_box_or_the_stop_token(smol_tokenizer):
    tok = smol_tokenizer
    ids = _ids(tok, "I hold a King, so I bet. \\boxed{bet}")
    th, lp = cut_thought(ids, [float(-i) for i in range(len(ids))], tok, set())
    assert tok.decode(th) == "I hold a King, so I bet." and lp == [float(-i) for i in range(len(th))]
    eos = tok.eos_token_id
    th, lp = cut_thought([*ids[:3], eos, *ids[3:]], [0.0] * (len(ids) + 1), tok, {eos})
    assert th == ids[:3] and len(lp) == 3
    plain = _ids(tok, "no answer yet")
    assert cut_thought(plain, [0.0] * len(plain), tok, {eos})[0] == plain


def test_per_token_thought_scores_sum_to_the_thought_score(tiny):
    model, tok = tiny
    prompts = PromptFormat(tok, "auto", "compact").encode(OBS)
    thoughts = [_ids(tok, " I bet with a King"), []]
    cands = [[_ids(tok, "\\boxed{bet}"), _ids(tok, "\\boxed{check}")]] * 2
    with torch.no_grad():
        per, _ = score_thought_tokens(model, prompts, [0, 1], thoughts, cands)
        total, _ = score_thoughts(model, prompts, [0, 1], thoughts, cands)
    assert per.shape == (2, len(thoughts[0]))
    assert torch.allclose(per.sum(-1), total) and float(per[1].abs().sum()) == 0.0


def test_thought_tokens_take_their_own_temperature_and_moves_keep_theirs(tiny):
    model, tok = tiny
    prompts = PromptFormat(tok, "auto", "compact").encode(OBS)
    thoughts = [_ids(tok, " I bet with a King"), []]
    cands = [[_ids(tok, "\\boxed{bet}"), _ids(tok, "\\boxed{check}")]] * 2
    with torch.no_grad():
        both, moves = score_thought_tokens(model, prompts, [0, 1], thoughts, cands, 1.0, 0.5)
        cold, cold_moves = score_thought_tokens(model, prompts, [0, 1], thoughts, cands, 0.5)
        _, warm_moves = score_thought_tokens(model, prompts, [0, 1], thoughts, cands, 1.0)
    assert torch.allclose(both, cold, atol=1e-6)
    assert all(torch.allclose(m, w, atol=1e-6) for m, w in zip(moves, warm_moves, strict=True))
    assert not torch.allclose(moves[0], cold_moves[0], atol=1e-4)  # the temperatures differ where they should


def _think_policy(model, tok, budget=8, generator="hf", thought_temperature=0.0):
    return build_policy(model, tok, "fp32", 8, 3, "auto", True, generator, action_mode="think", score_dtype="fp32",
                        prompt_style="compact", think_tokens=budget, think_temperature=thought_temperature)  # fmt: skip


def test_think_responses_hold_a_thought_then_a_legal_move(tiny):
    model, tok = tiny
    policy = _think_policy(model, tok)
    out = policy.respond(OBS * 3, Sampling(1.0, 1.0, 64), LEGAL * 3)
    for r, legal in zip(out, LEGAL * 3, strict=True):
        assert 0 <= r.thought_len <= 8 and len(r.logprobs) == r.thought_len + 1
        assert r.tokens[r.thought_len :] == r.candidates[r.choice]
        assert all(lp <= 0 for lp in r.logprobs)
        assert any(f"\\boxed{{{m.strip('[]')}}}" in r.text for m in legal)
        assert stop_ids(model, tok)[0] not in r.tokens[: r.thought_len]


@pytest.mark.parametrize("thought_temperature", [0.0, 0.6])
def test_learner_recomputes_the_behaviour_logprobs(tiny, thought_temperature):
    """Before any update, PPO's ratio is 1 on every thought token and move (fp32 sampler and learner), also
    with thoughts sampled at a temperature of their own."""
    from spiral.config import LearnerSettings
    from spiral.training.learner import Learner
    from spiral.training.rollout import Turn

    model, tok = tiny
    policy = _think_policy(model, tok, thought_temperature=thought_temperature)
    assert policy.thought_sampling(Sampling(1.0, 1.0, 64)).temperature == (thought_temperature or 1.0)
    out = policy.respond(OBS * 4, Sampling(1.0, 1.0, 64), LEGAL * 4)
    turns = [Turn(game_id=i, env_id="x", role=0, prompt_ids=r.prompt_ids, response_ids=r.tokens,
                  old_logprobs=r.logprobs, response_text=r.text, legal_actions=LEGAL[i % 2],
                  advantage=1.0 if i % 3 else -0.5, candidates=r.candidates, choice=r.choice,
                  thought_len=r.thought_len) for i, r in enumerate(out)]  # fmt: skip
    s = LearnerSettings(lr=1e-3, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.0, warmup_steps=0, ppo_epochs=1,
                        clip=0.2, loss_norm=8.0, kl_coef=0.0, entropy_coef=0.1, micro_batch_tokens=300,
                        micro_batch_size=4, grad_clip=1.0, update=True)  # fmt: skip
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    m = Learner(model, s, thought_temperature=thought_temperature).update(turns, 0)
    assert m["train/ratio_mean"] == pytest.approx(1.0, abs=1e-5)
    assert m["train/ratio_max"] == pytest.approx(1.0, abs=1e-4) and m["train/approx_kl"] < 1e-8
    assert 0 < m["train/entropy"] <= torch.log(torch.tensor(2.0)).item() + 1e-6  # per turn, over 2 moves
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())  # it learnt


def test_card_accuracy_sees_a_card_that_is_written_and_not_one_that_is_not():
    cards = ["J", "Q", "K"] * 20
    said = [[{"J": 5, "Q": 6, "K": 7}[c], 9] for c in cards]
    assert card_accuracy(said, cards) == pytest.approx(1.0)
    assert card_accuracy([[] for _ in cards], cards) == pytest.approx(1 / 3)
    noise = [[9, 10] for _ in cards]
    assert card_accuracy(noise, cards) < 0.5


def test_think_readout_averages_the_moves_after_sampled_thoughts(tiny):
    model, tok = tiny
    policy = _think_policy(model, tok, budget=4)
    state = policy.generator.get_state()
    r = think_readout(policy, samples=3, n_boot=20)
    assert torch.equal(policy.generator.get_state(), state)  # the training stream is untouched
    assert len(r.probs) == 12 and all(0 <= p <= 1 for p in r.probs.values())
    assert r.ci_low <= r.ci_high
    assert set(r.diagnostics) == {"length", "empty_share", "distinct_share", "card_accuracy", "tv"}
    assert 0 <= r.diagnostics["length"] <= 4 and len(r.examples["Kb"]) == 3
    again = think_readout(policy, samples=3, n_boot=20)
    assert again.probs == r.probs  # seeded: the same thoughts


def test_a_think_run_logs_readouts_and_diagnostics(tiny_run, capsys):
    from spiral.cli import main

    run = tiny_run(2, "--set", "rollout.action_mode=think", "--set", "rollout.think_tokens=6",
                   "--set", "eval.exploitability_every=1", "--set", "eval.think_samples=3")  # fmt: skip
    rows = [json.loads(x) for x in (run / "eval" / "exploitability.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [0, 1, 2]
    assert all(x["ci_low"] <= x["ci_high"] and "card_accuracy" in x["diagnostics"] for x in rows)
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("think/tv" in m for m in metrics)
    from spiral.report import build_report

    page = build_report(run).read_text()
    assert (
        "Thoughts (think mode)" in page
        and "card_accuracy" in page
        and "interval over the sampled thoughts" in page
    )
    capsys.readouterr()
    assert main(["eval", "exploitability", "--policy", str(run), "--exact", "--samples", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "think" and out["ci_low"] <= out["ci_high"] and out["samples"] == 3


def test_a_free_form_run_reads_its_policy_from_sampled_answers(tiny_run):
    run = tiny_run(1, "--set", "eval.exploitability_every=1", "--set", "eval.think_samples=4")
    rows = [json.loads(x) for x in (run / "eval" / "exploitability.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [0, 1]
    for x in rows:  # a random tiny model names a legal move in almost none of its answers
        assert x["ci_low"] <= x["ci_high"] and all(0 <= m <= 1 for m in x["legal_mass"].values())
