"""Sampling log-probs, the batched generator against fresh forward passes, and the rollout collector."""

from __future__ import annotations

import pytest
import torch

from spiral.agents.lm import build_policy, stop_ids
from spiral.generation.base import Sampling, sample_tokens
from spiral.generation.hf import HFGenerator
from spiral.training.learner import collate, response_logprobs
from spiral.training.rollout import RolloutCollector, Turn


def test_sample_tokens_returns_the_temperature_distributions_logprob():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]] * 50)
    g = torch.Generator().manual_seed(0)
    ids, lp = sample_tokens(logits, 0.5, 1.0, g)
    want = torch.log_softmax(logits / 0.5, -1).gather(-1, ids[:, None]).squeeze(-1)
    assert torch.allclose(lp, want)


def test_top_p_restricts_the_draw_but_not_the_logprob():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(400, 1)
    ids, lp = sample_tokens(logits, 1.0, 0.7, torch.Generator().manual_seed(1))
    assert set(ids.tolist()) == {0, 1}  # 0.5 + 0.3 covers 0.7
    assert torch.allclose(lp, torch.log(torch.tensor([0.5, 0.3]))[ids])


def test_temperature_zero_is_greedy():
    ids, _ = sample_tokens(torch.tensor([[0.0, 3.0, 1.0]]), 0.0, 1.0, None)
    assert ids.tolist() == [1]


def _check_against_forward(model, prompts, gen, temperature, atol):
    turns = [
        Turn(i, "G", 0, p, t, lp, "", [])
        for i, (p, t, lp) in enumerate(zip(prompts, gen.tokens, gen.logprobs, strict=False))
    ]
    with torch.no_grad():
        fresh = response_logprobs(model, collate(turns), temperature)
    for b, t in enumerate(turns):
        got = torch.tensor(t.old_logprobs)
        assert got == pytest.approx(fresh[b, : len(t.response_ids)], abs=atol)


def test_generator_logprobs_match_a_fresh_forward_pass_with_padding_and_early_stops(letters):
    model, tok = letters  # 7 tokens, <eos> among them: rows stop at different times
    gen_model = HFGenerator(
        model, stop_ids(model, tok), tok.pad_token_id, torch.float32, batch_size=3, seed=0
    )
    prompts = [
        tok("ABCD")["input_ids"],
        tok("A")["input_ids"],
        tok("DCBADCBA")["input_ids"],
        tok("BB")["input_ids"],
    ]
    gen = gen_model.generate(prompts, Sampling(temperature=0.8, top_p=1.0, max_new_tokens=12))
    lengths = [len(t) for t in gen.tokens]
    assert len(set(lengths)) > 1  # some rows stopped early and left the batch
    for toks, trunc in zip(gen.tokens, gen.truncated, strict=False):
        assert (toks[-1] == tok.eos_token_id) != trunc and tok.eos_token_id not in toks[:-1]
    _check_against_forward(model, prompts, gen, 0.8, 1e-4)


def test_bf16_generation_logprobs_are_close_to_the_fp32_forward(tiny):
    model, tok = tiny
    gen_model = HFGenerator(model, stop_ids(model, tok), tok.pad_token_id, torch.bfloat16, seed=0)
    assert next(gen_model.model.parameters()).dtype == torch.bfloat16
    prompts = [tok("hello there")["input_ids"], tok("a longer prompt than the first one")["input_ids"]]
    gen = gen_model.generate(prompts, Sampling(1.0, 1.0, 6))
    _check_against_forward(model, prompts, gen, 1.0, 0.1)


def test_generator_is_reproducible_from_its_rng_state(letters):
    model, tok = letters
    g = HFGenerator(model, [tok.eos_token_id], tok.pad_token_id, torch.float32, seed=3)
    state = g.get_state()
    a = g.generate([[3, 4]] * 4, Sampling(1.0, 1.0, 5)).tokens
    g.set_state(state)
    assert g.generate([[3, 4]] * 4, Sampling(1.0, 1.0, 5)).tokens == a


def test_load_weights_syncs_a_copied_generator(tiny):
    model, tok = tiny
    g = HFGenerator(model, stop_ids(model, tok), tok.pad_token_id, torch.bfloat16)
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)  # tied to the embeddings
    g.load_weights(model)
    assert torch.allclose(g.model.lm_head.weight.float(), model.lm_head.weight, atol=0.02)


def _collector(model, tok, **kw):
    policy = build_policy(model, tok, "fp32", 32, seed=0, prompt_template="plain")
    defaults = dict(env_ids=["KuhnPoker-v2"], env_kwargs={"KuhnPoker-v2": {"rounds": 1}}, num_envs=4,
                    sampling=Sampling(1.0, 1.0, 4), parse_mode="lenient", seed=0)  # fmt: skip
    return RolloutCollector(policy, **{**defaults, **kw})


def test_collector_keeps_exactly_turns_per_step_with_their_games_returns(tiny):
    model, tok = tiny
    col = _collector(model, tok)
    out = col.collect(6)
    assert len(out.turns) == 6
    games = {g.game_id: g for g in out.games}
    for t in out.turns:
        assert t.final_return == games[t.game_id].returns[t.role]
        assert t.prompt_ids and t.response_ids and len(t.old_logprobs) == len(t.response_ids)
        assert t.invalid == (not t.lenient_ok)  # lenient game parsing: the game agrees with parse_action
    assert out.stats["rollout/turns_played"] >= 6 and out.stats["rollout/turns_kept"] == 6
    assert {"rollout/invalid_rate_strict", "rollout/invalid_rate_lenient", "rollout/response_tokens"} <= set(
        out.stats
    )


def test_collector_with_a_fixed_opponent_records_only_the_policys_seat(tiny):
    from spiral.agents import make_agent

    model, tok = tiny
    col = _collector(model, tok, opponent=make_agent("random", "KuhnPoker-v2", seed=0), parse_mode="strict")
    out = col.collect(8)
    for g in out.games:
        assert g.policy_roles in ([], [g.game_id % 2])  # the seat alternates between games
        assert all(t.role == g.game_id % 2 for t in g.turns)


def test_multi_game_collection_alternates_games(tiny):
    model, tok = tiny
    col = _collector(model, tok, env_ids=["KuhnPoker-v2", "TicTacToe-v0"], num_envs=4)
    out = col.collect(8)
    assert {g.env_id for g in out.games} == {"KuhnPoker-v2", "TicTacToe-v0"}


def test_single_token_guess_game():
    from spiral.games import make

    env = make("SingleTokenGuess-v0", options="ABC", winner="B")
    env.reset(seed=0)
    player, obs = env.get_observation()
    assert player == 0 and "A B C" in obs and env.legal_actions() == ["[A]", "[B]", "[C]"]
    assert env.step(" b") == (True, {"reason": "Player 0 guessed [B]: right"})
    assert env.close()[0] == {0: 1.0, 1: -1.0}
    env.reset(seed=1)
    env.step("\\boxed{A}")
    assert env.close()[0] == {0: -1.0, 1: 1.0}
    env.reset(seed=2)
    done, info = env.step("zebra")
    assert done and info["invalid_move"] and env.close()[0] == {0: -1.5, 1: 0.0}


def test_single_token_guess_rejects_bad_options():
    from runkit.errors import UserError
    from spiral.games import make

    with pytest.raises(UserError):
        make("SingleTokenGuess-v0", options="A")
    with pytest.raises(UserError):
        make("SingleTokenGuess-v0", options="AB", winner="Z")


def test_plan_prefixes_groups_prompts_by_long_shared_prefixes():
    from spiral.generation.prefix import plan_prefixes

    a = list(range(100))
    prompts = [a + [1, 2], [7] * 50, a[:80] + [5], a + [3], [7] * 50 + [8]]
    groups, group_of, cut = plan_prefixes(prompts, min_len=32)
    assert group_of[0] == group_of[2] == group_of[3] and group_of[1] == group_of[4] != group_of[0]
    assert cut[0] == 80 and cut[1] == 49  # the common part; a prompt keeps its last token outside
    for p, c in zip(prompts, cut, strict=False):
        assert 0 <= c < len(p)


def test_plan_prefixes_shares_the_rules_of_prompts_with_long_own_parts():
    """TicTacToe-like prompts: a 100-token head, then 120 tokens of their own (more than the head's quarter).
    They form one group with the head as prefix; a stray prompt sharing only part of the head does not cut the
    prefix of a large group short, and opens its own group."""
    from spiral.generation.prefix import plan_prefixes

    head = list(range(100))
    prompts = [head + [1000 + i] * 120 for i in range(10)] + [head[:40] + [5000] * 50]
    groups, group_of, cut = plan_prefixes(prompts)
    assert len(set(group_of[:10])) == 1 and cut[:10] == [100] * 10
    assert group_of[10] != group_of[0] and len(groups) == 2
    # two prompts alone share what they have in common, however short their own parts
    groups, group_of, cut = plan_prefixes(prompts[:1] + prompts[10:])
    assert len(groups) == 1 and cut == [40, 40]


def _shared_prompts(tok):
    head = "You are Player 0 in a long game with many rules that every prompt repeats word for word. " * 3
    return [tok(head + tail)["input_ids"] for tail in ("Card: K", "Card: J. Bet?", "Card: Q", "x")] + [
        tok("A different prompt entirely")["input_ids"]
    ]


def test_shared_prefix_generation_logprobs_match_a_fresh_forward_pass(tiny):
    from spiral.generation.prefix import plan_prefixes

    model, tok = tiny
    prompts = _shared_prompts(tok)
    groups, _, cut = plan_prefixes(prompts)
    assert len(groups) == 2 and max(cut) > 40  # the long head is shared
    g = HFGenerator(model, stop_ids(model, tok), tok.pad_token_id, torch.float32, seed=0, share_prefix=True)
    gen = g.generate(prompts, Sampling(1.0, 1.0, 5))
    _check_against_forward(model, prompts, gen, 1.0, 1e-4)


def test_shared_prefix_learner_logprobs_and_gradients_equal_the_plain_path(tiny):
    model, tok = tiny
    prompts = _shared_prompts(tok)
    turns = [
        Turn(i, "G", 0, p, [5, 6, 7][: 1 + i % 3], [0.0] * (1 + i % 3), "", []) for i, p in enumerate(prompts)
    ]
    batch = collate(turns)
    grads = []
    for share in (False, True):
        model.zero_grad()
        lp = response_logprobs(model, batch, 0.9, share_prefix=share)
        (lp * batch["response_mask"]).sum().backward()
        grads.append((lp.detach(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-4)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-4, rtol=1e-3)
