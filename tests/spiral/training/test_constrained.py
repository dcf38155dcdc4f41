"""Constrained action decoding and the exact readout (spiral.generation.actions): scores equal a plain forward pass, stay
with their prompt whatever the batching, the sampled move's log-prob is the one the learner recomputes, and the
learner's update moves probability the way the advantage says."""

from __future__ import annotations

import pytest
import torch

from spiral.agents.kuhn import KEYS, exploitability
from spiral.agents.lm import ConstrainedPolicy, build_policy
from spiral.config import LearnerSettings
from spiral.evaluation.exploitability import exact_readout, infoset_prompts, openspiel_exploitability
from spiral.generation.actions import Candidates, MoveSampler, candidate_text, score_candidates
from spiral.generation.base import Sampling
from spiral.model import PromptFormat
from spiral.training.learner import Learner
from spiral.training.rollout import RolloutCollector


def _plain_score(model, prompt: list[int], cand: list[int]) -> float:
    """Sum of the candidate's token log-probs from one unbatched forward pass over prompt + candidate."""
    ids = torch.tensor([prompt + cand])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return float(sum(logp[len(prompt) - 1 + j, t] for j, t in enumerate(cand)))


def _kuhn_inputs(tokenizer, keys=KEYS, style="compact"):
    prompts = infoset_prompts()
    fmt = PromptFormat(tokenizer, "auto", style)
    cands = Candidates(tokenizer)
    return fmt.encode([prompts[k][0] for k in keys]), [cands.for_legal(prompts[k][1]) for k in keys]


def test_candidate_text_is_a_strict_legal_answer():
    from spiral.prompting import parse_action

    for move, legal in [
        ("[bet]", ["[check]", "[bet]"]),
        ("[4]", ["[3]", "[4]"]),
        ("[fold]", ["[fold]", "[call]"]),
    ]:
        assert parse_action(candidate_text(move), legal, "strict") == move


@pytest.mark.parametrize("style", ["paper", "compact"])
def test_scores_equal_a_plain_forward_pass(tiny, style):
    model, tok = tiny
    prompts, cands = _kuhn_inputs(tok, KEYS[:5], style)
    got = score_candidates(model, prompts, cands)
    for p, cs, sc in zip(prompts, cands, got, strict=True):
        assert sc.shape == (len(cs),)
        for c, s in zip(cs, sc.tolist(), strict=True):
            assert s == pytest.approx(_plain_score(model, p, c), abs=2e-4)


def test_scores_of_many_candidates_of_mixed_lengths_equal_a_plain_forward_pass(tiny):
    """Up to 9 candidates a prompt (TicTacToe), of 1 to 6 tokens, laid out as their prefix tree under the tree mask."""
    model, tok = tiny
    fmt = PromptFormat(tok, "auto", "compact")
    prompts = fmt.encode(["Board: X at 4. Your move.", "Board: empty. Your move, O.", "Make an offer."])
    cands = [
        [tok("\\boxed{" + str(i) + "}", add_special_tokens=False)["input_ids"] for i in range(9)],
        [[17], tok(" \\boxed{[check]} then more", add_special_tokens=False)["input_ids"], [5, 6]],
        [tok("\\boxed{[bet]}", add_special_tokens=False)["input_ids"]],
    ]
    assert max(len(c) for cs in cands for c in cs) > 5 and min(len(c) for cs in cands for c in cs) == 1
    got = score_candidates(model, prompts, cands)
    for p, cs, sc in zip(prompts, cands, got, strict=True):
        for c, s in zip(cs, sc.tolist(), strict=True):
            assert s == pytest.approx(_plain_score(model, p, c), abs=2e-4)


def test_candidates_sharing_a_prefix_share_its_nodes():
    from spiral.generation.actions import candidate_trie

    boxes = [[92, 1, 2, 3, 10 + i, 99] for i in range(9)]  # `\\ box ed { i }`: 9 TicTacToe moves
    tokens, parents, steps = candidate_trie(boxes)
    assert len(tokens) == 4 + 9  # the shared `\\boxed{` once, then each move's own token
    assert parents[:4] == [-1, 0, 1, 2] and all(p == 3 for p in parents[4:])
    assert len(steps) == 9 * 5 and sorted({k for _, _, k in steps}) == list(range(9))
    flat, _, _ = candidate_trie(boxes, share=False)
    assert len(flat) == 9 * 5  # the layout before the tree: every candidate on its own


def test_gqa_attention_equals_repeated_keys(tiny):
    """`sdpa_gqa` (spiral.generation.attention) gives the scores and gradients of transformers' `sdpa`."""
    model, tok = tiny
    assert (
        model.config._attn_implementation == "sdpa_gqa"
        and model.model.layers[0].self_attn.num_key_value_groups > 1
    )
    _same_scores_and_grads(model, _kuhn_inputs(tok, KEYS[:6]), "sdpa_gqa", 1e-5, 1e-6)


def _same_scores_and_grads(model, inputs, impl: str, atol_scores: float, atol_grads: float) -> None:
    """Scores and embedding gradients under `sdpa` and under `impl` agree."""
    prompts, cands = inputs
    runs = []
    for name in ("sdpa", impl):
        model.config._attn_implementation = name
        model.zero_grad()
        scores = score_candidates(model, prompts, cands)
        torch.stack([s.logsumexp(-1) for s in scores]).sum().backward()
        runs.append(([s.detach() for s in scores], model.model.embed_tokens.weight.grad.clone()))
    for a, b in zip(runs[0][0], runs[1][0], strict=True):
        assert torch.allclose(a, b, atol=atol_scores)
    assert torch.allclose(runs[0][1], runs[1][1], atol=atol_grads) and runs[0][1].abs().sum() > 0


def test_scores_under_eager_attention_equal_sdpa(tiny):
    """The tree mask is boolean for SDPA and additive for eager attention; both give the same scores and grads."""
    model, tok = tiny
    _same_scores_and_grads(model, _kuhn_inputs(tok, KEYS[:4]), "eager", 2e-4, 1e-4)


def test_scores_stay_with_their_prompt_whatever_the_chunking(tiny):
    model, tok = tiny
    prompts, cands = _kuhn_inputs(tok)
    order = [7, 2, 11, 0, 5, 9, 1, 10, 3, 8, 4, 6]  # not sorted: chunks are formed in sorted order
    prompts, cands = [prompts[i] for i in order], [cands[i] for i in order]
    alone = [score_candidates(model, [p], [c])[0] for p, c in zip(prompts, cands, strict=True)]
    for chunk_tokens in (1, 600, 100_000):  # one prompt a chunk, a few, all at once
        got = MoveSampler(model, "fp32", chunk_tokens=chunk_tokens).scores(prompts, cands)
        for a, b in zip(alone, got, strict=True):
            assert torch.allclose(a, b, atol=2e-4)


def test_a_trie_pass_over_the_logits_budget_is_split_into_row_groups_with_the_same_scores(tiny, monkeypatch):
    """Many long candidates (Negotiation's offers) once made 24 GB of logits; over SCORE_LOGITS_BYTES the rows
    are scored in groups, each row with its own prompt, and the scores do not change."""
    import spiral.generation.actions as actions

    model, tok = tiny
    fmt = PromptFormat(tok, "auto", "compact")
    prompts = fmt.encode([f"Turn {i}. You hold 10 Wood and 10 Gold. Offer or deny." for i in range(5)])
    offers = [f"[Offer: {a} Wood -> {b} Gold]" for a in range(1, 4) for b in range(1, 4)]
    cands = [Candidates(tok).for_legal(["[Deny]", *offers[: 3 + i]]) for i in range(5)]
    whole = score_candidates(model, prompts, cands)
    nodes = [len(actions.candidate_trie(c, True)[0]) for c in cands]
    row = max(nodes) * model.config.vocab_size * 4
    monkeypatch.setattr(actions, "SCORE_LOGITS_BYTES", 2 * row)  # two rows a group at most
    assert len(actions._row_groups(nodes, model.config.vocab_size)) >= 3
    split = score_candidates(model, prompts, cands)
    for a, b in zip(whole, split, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=2e-4)
    monkeypatch.setattr(actions, "SCORE_LOGITS_BYTES", 1)  # every row on its own, even one over the budget
    assert actions._row_groups(nodes, model.config.vocab_size) == [(i, i + 1) for i in range(5)]
    for a, b in zip(whole, score_candidates(model, prompts, cands), strict=True):
        assert torch.allclose(a, b, atol=2e-4)


def test_constrained_policy_plays_only_legal_moves_with_the_learners_logprob(tiny):
    model, tok = tiny
    policy = build_policy(model, tok, action_mode="constrained", prompt_style="compact", seed=3)
    assert isinstance(policy, ConstrainedPolicy)
    collector = RolloutCollector(policy, ["KuhnPoker-v2", "TicTacToe-v0"], {"KuhnPoker-v2": {"rounds": 1}},
                                 num_envs=8, sampling=Sampling(1.0, 1.0, 8), keep_all=True)  # fmt: skip
    rollout = collector.collect(24)
    assert rollout.turns and not any(t.invalid for t in rollout.turns)
    assert len(rollout.turns) == rollout.stats["rollout/turns_played"]  # keep_all: every played turn
    for t in rollout.turns[:6]:
        assert t.candidates is not None and len(t.candidates) == len(t.legal_actions)
        assert t.response_ids == t.candidates[t.choice] and t.strict_ok
        score = score_candidates(model, [t.prompt_ids], [t.candidates])[0]
        assert t.old_logprobs[0] == pytest.approx(
            float(torch.log_softmax(score.detach(), -1)[t.choice]), abs=2e-4
        )


def test_exact_readout_is_the_renormalised_box_probability(tiny):
    model, tok = tiny
    policy = build_policy(model, tok, action_mode="constrained", prompt_style="compact")
    r = exact_readout(policy, model)
    prompts, cands = _kuhn_inputs(tok)
    for key, p, cs in zip(KEYS, prompts, cands, strict=True):
        sc = score_candidates(model, [p], [cs])[0].detach()
        assert r.probs[key] == pytest.approx(
            float(torch.softmax(sc, -1)[1]), abs=1e-4
        )  # [bet] / [call] second
        assert r.legal_mass[key] == pytest.approx(float(sc.exp().sum()), rel=1e-3) and r.legal_mass[key] <= 1
    assert r.exploitability == pytest.approx(openspiel_exploitability(r.probs), abs=1e-9)
    assert r.exploitability == pytest.approx(exploitability(r.probs), abs=1e-9)


def _kuhn_turns(model, tok, seed: int) -> list:
    """One step of constrained one-round Kuhn self-play: 8 games, every turn kept."""
    policy = build_policy(model, tok, action_mode="constrained", prompt_style="compact", seed=seed)
    collector = RolloutCollector(policy, ["KuhnPoker-v2"], {"KuhnPoker-v2": {"rounds": 1}}, num_envs=8,
                                 sampling=Sampling(1.0, 1.0, 8), keep_all=True)  # fmt: skip
    return collector.collect(8).turns


def _learner(model, **kw):
    settings = LearnerSettings(lr=1e-4, ppo_epochs=1, micro_batch_tokens=4096, **kw)
    return Learner(model, settings, temperature=1.0)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_constrained_update_moves_the_played_moves_probability_with_the_advantage(tiny, sign):
    model, tok = tiny
    turns = _kuhn_turns(model, tok, seed=1)
    for t in turns:
        t.advantage = sign
    before = [float(t.old_logprobs[0]) for t in turns]
    metrics = _learner(model).update(turns, 0)
    assert metrics["train/ratio_mean"] == pytest.approx(1.0, abs=1e-4)  # old log-probs are the learner's
    assert 0 < metrics["train/distinct_prompts"] <= len(turns)
    after = []
    for t in turns:
        sc = score_candidates(model, [t.prompt_ids], [t.candidates])[0]
        after.append(float(torch.log_softmax(sc, -1)[t.choice]))
    moved = sum(a - b for a, b in zip(after, before, strict=True))
    assert moved * sign > 0


def _mean_kl_and_entropy(model, ref, turns) -> tuple[float, float]:
    """Exact KL(model || ref) and entropy over the legal moves, averaged over the turns' prompts."""
    kl = ent = 0.0
    with torch.no_grad():
        for t in turns:
            lp = torch.log_softmax(score_candidates(model, [t.prompt_ids], [t.candidates])[0], -1)
            lq = torch.log_softmax(score_candidates(ref, [t.prompt_ids], [t.candidates])[0], -1)
            kl += float((lp.exp() * (lp - lq)).sum()) / len(turns)
            ent += float(-(lp.exp() * lp).sum()) / len(turns)
    return kl, ent


def test_entropy_bonus_and_kl_to_a_reference_pull_as_they_should(tiny):
    import copy

    from spiral.model import plain_copy

    model, tok = tiny
    turns = _kuhn_turns(model, tok, seed=2)
    for t in turns:
        t.advantage = 0.0  # no policy-gradient signal: only the regularisers act
    ref = plain_copy(model, torch.float32)
    result = {}
    for name, ent_coef, kl_coef in [("up", 1.0, 0.0), ("down", -1.0, 0.0), ("down+kl", -1.0, 20.0)]:
        m = copy.deepcopy(model)
        learner = Learner(m, LearnerSettings(lr=1e-3, ppo_epochs=1, entropy_coef=ent_coef, kl_coef=kl_coef), 1.0,
                          ref_model=ref)  # fmt: skip
        for step in range(3):
            metrics = learner.update(turns, step)
        result[name] = _mean_kl_and_entropy(m, ref, turns)
        if kl_coef:
            assert metrics["train/kl"] > 0  # logged once the policy has left its reference
    assert result["up"][1] > result["down"][1]  # the bonus raises the entropy over legal moves
    assert result["down+kl"][0] < result["down"][0]  # the KL term holds the policy nearer its reference


CONSTRAINED = ["--preset", "tiny-test", "--threads", "1", "--set", "run.plots=false", "--set",
               "rollout.action_mode=constrained", "--set", "eval.exploitability_every=1", "--set",
               "rollout.keep_all_turns=true", "--set", "model.prompt_style=compact", "--set", "learner.kl_coef=0.1",
               "--set", "eval.every=0"]  # fmt: skip


@pytest.mark.slow
def test_constrained_run_logs_exploitability_and_resumes_exactly(tmp_path):
    import json

    from runkit.metrics import read_metrics
    from spiral.cli import main

    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["train", *CONSTRAINED, "--steps", "3", "--out", str(whole)]) == 0
    assert main(["train", *CONSTRAINED, "--steps", "2", "--out", str(part), "--set", "run.save_every=1"]) == 0
    assert main(["train", "--resume", str(part), "--steps", "3", "--threads", "1"]) == 0
    rows = [json.loads(x) for x in (whole / "eval" / "exploitability.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and all(0 <= r["exploitability"] <= 2 for r in rows)
    assert set(rows[0]["probs"]) == set(KEYS) and (whole / "reference" / "config.json").is_file()
    a, b = read_metrics(whole / "metrics.jsonl"), read_metrics(part / "metrics.jsonl")
    assert a[-1]["train/loss"] == b[-1]["train/loss"] and a[-1]["train/kl"] == b[-1]["train/kl"]
    assert a[-1]["eval/exploitability"] == pytest.approx(b[-1]["eval/exploitability"], abs=1e-9)
    assert a[-1]["eval/avg_exploitability"] == pytest.approx(b[-1]["eval/avg_exploitability"], abs=1e-9)
    assert all(r.get("rollout/invalid_rate", 0.0) == 0.0 for r in a)


def test_a_multigame_run_reads_out_its_kuhn_policy(tmp_path):
    import json

    from spiral.cli import main

    out = tmp_path / "multi"
    games = ["--set", "rollout.env_ids=TicTacToe-v0,KuhnPoker-v2"]
    assert main(["train", *CONSTRAINED, *games, "--steps", "1", "--out", str(out)]) == 0
    rows = [json.loads(x) for x in (out / "eval" / "exploitability.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and set(rows[-1]["probs"]) == set(KEYS)


def test_max_minutes_ends_the_run_with_its_final_evaluation(tmp_path):
    from runkit.metrics import read_metrics
    from spiral.cli import main

    out = tmp_path / "run"
    assert (
        main(["train", *CONSTRAINED, "--steps", "50", "--out", str(out), "--set", "run.max_minutes=0.0001"])
        == 0
    )
    rows = read_metrics(out / "metrics.jsonl")
    assert rows[-1]["step"] == 1 and "eval/exploitability" in rows[-1] and rows[-1]["time/train_minutes"] > 0
    assert (out / "checkpoints" / "step_000001").is_dir()


def test_eval_exploitability_exact_cli(capsys):
    import json

    from spiral.cli import main

    assert main(["eval", "exploitability", "--policy", "tiny", "--exact", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "exact" and set(out["probs"]) == set(KEYS)
    assert out["exploitability"] == pytest.approx(openspiel_exploitability(out["probs"]), abs=1e-9)
    assert all(0 <= v <= 1 for v in out["legal_mass"].values())


def test_report_shows_the_readout_and_survives_a_damaged_file(tmp_path):
    import json

    from spiral.report import exploitability_section

    assert exploitability_section(tmp_path) == ""  # no readouts: no section
    (tmp_path / "eval").mkdir()
    row = {"step": 0, "exploitability": 0.5, "avg_exploitability": 0.5, "probs": dict.fromkeys(KEYS, 0.5)}
    lines = [json.dumps(row), "not json", json.dumps({**row, "step": 5, "probs": {"J": "<b>"}})]
    (tmp_path / "eval" / "exploitability.jsonl").write_text("\n".join(lines))
    html = exploitability_section(tmp_path)
    assert "Nash (alpha 0)" in html and "<b>" not in html and "&lt;b&gt;" in html


@pytest.mark.slow
def test_resume_after_a_lost_checkpoint_replays_no_transcript_or_readout_twice(tmp_path):
    import json
    import shutil
    from collections import Counter

    from spiral.cli import main

    run = tmp_path / "run"
    args = ["--set", "run.save_every=2", "--set", "run.keep_checkpoints=0"]
    assert main(["train", *CONSTRAINED, "--steps", "3", "--out", str(run), *args]) == 0
    whole = Counter(
        json.loads(x)["step"] for x in (run / "transcripts" / "selfplay.jsonl").read_text().splitlines()
    )
    shutil.rmtree(run / "checkpoints" / "step_000003")  # killed while writing step 3's checkpoint
    assert main(["train", "--resume", str(run), "--steps", "3", "--threads", "1"]) == 0
    again = Counter(
        json.loads(x)["step"] for x in (run / "transcripts" / "selfplay.jsonl").read_text().splitlines()
    )
    assert again == whole  # step 3 once, not twice
    steps = [json.loads(x)["step"] for x in (run / "eval" / "exploitability.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3]


def test_truncate_jsonl_keeps_rows_up_to_the_step(tmp_path):
    from runkit.io import truncate_jsonl

    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"step": 1}\n{"step": 2}\nnot json\n\xff\n{"step": 3}\n[1]\n')
    assert truncate_jsonl(path, 2) == 4 and path.read_text() == '{"step": 1}\n{"step": 2}\n'
    assert truncate_jsonl(path, 2) == 0 and truncate_jsonl(tmp_path / "missing.jsonl", 0) == 0


@pytest.mark.slow
@pytest.mark.parametrize("lora", [True, False])
def test_a_moving_magnet_restarts_the_kl_and_resumes_exactly(tmp_path, lora):
    """learner.kl_ref_every=2: the reference becomes the policy after steps 2 and 4, so the KL of the next
    update (one PPO epoch, measured before it moves the policy) is zero there and positive in between; a run
    resumed at step 3, between two moves (LoRA: the magnet's adapters in the checkpoint; full: the reference
    folder), equals an uninterrupted one."""
    from runkit.metrics import read_metrics
    from spiral.cli import main

    args = [*CONSTRAINED, "--set", "learner.kl_ref_every=2", "--set", "learner.ppo_epochs=1", "--set",
            f"model.lora={str(lora).lower()}", "--set", "learner.lr=3e-3"]  # fmt: skip
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["train", *args, "--steps", "5", "--out", str(whole)]) == 0
    kl = {r["step"]: r["train/kl"] for r in read_metrics(whole / "metrics.jsonl") if "train/kl" in r}
    # zero up to the merged copy's rounding (~1e-8) after each move, positive between moves
    assert [k for k, v in kl.items() if v < 1e-6] == [1, 3, 5] and min(kl[2], kl[4]) > 1e-3
    assert main(["train", *args, "--steps", "3", "--out", str(part), "--set", "run.save_every=3"]) == 0
    assert main(["train", "--resume", str(part), "--steps", "5", "--threads", "1"]) == 0  # magnet of step 2
    a, b = read_metrics(whole / "metrics.jsonl"), read_metrics(part / "metrics.jsonl")
    # equal up to the reference's scoring batches (the cache is filled by other prompt groups after a resume);
    # a wrong magnet (the policy of step 3, or of step 0) moves the KL by far more than this
    assert a[-2]["train/kl"] == pytest.approx(b[-2]["train/kl"], rel=1e-4) and a[-2]["train/kl"] > 1e-3
    assert a[-1]["train/loss"] == pytest.approx(b[-1]["train/loss"], rel=1e-4, abs=1e-7)
    assert a[-1]["eval/exploitability"] == pytest.approx(b[-1]["eval/exploitability"], abs=1e-6)


def test_entropy_schedule_gives_each_step_its_own_weight(tiny):
    """learner.entropy_decay_steps: the update at step k is the update of a constant weight linear_decay(k)."""
    import copy

    from spiral.training.schedule import linear_decay

    assert [linear_decay(k, 1.0, -1.0, 4) for k in (0, 2, 4, 9)] == [1.0, 0.0, -1.0, -1.0]
    assert linear_decay(7, 0.3, 0.0, 0) == 0.3  # no schedule
    model, tok = tiny
    turns = _kuhn_turns(model, tok, seed=3)
    for t in turns:
        t.advantage = 0.5

    def trained(step: int, **kw) -> tuple[list[torch.Tensor], dict]:
        m = copy.deepcopy(model)
        metrics = _learner(m, **kw).update(turns, step)
        return [p.detach().clone() for p in m.parameters() if p.requires_grad], metrics

    sched = {"entropy_coef": 1.0, "entropy_final": -1.0, "entropy_decay_steps": 2}
    for step, constant in ((0, 1.0), (2, -1.0)):
        got, metrics = trained(step, **sched)
        want, plain = trained(step, entropy_coef=constant)
        assert metrics["train/entropy_coef"] == constant and "train/entropy_coef" not in plain
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    other, _ = trained(0, entropy_coef=-1.0)
    assert not all(torch.equal(a, b) for a, b in zip(trained(0, **sched)[0], other, strict=True))


def test_max_offer_units_keeps_small_offers_and_every_other_move(tiny):
    """rollout.max_offer_units: Negotiation's ~200 offers shrink to the small ones; [Accept] / [Deny] and other
    games' moves stay; the policy then draws only among them, and the setting needs constrained mode."""
    from runkit.errors import UserError
    from spiral.config import load_settings
    from spiral.games.negotiation import SimpleNegotiation
    from spiral.generation.actions import restrict_moves

    legal = ["[Accept]", "[Deny]", "[Offer: 1 Wood -> 3 Gold]", "[Offer: 4 Gold -> 1 Wood]", "[bet]", "[4]"]
    assert restrict_moves(legal, 3) == ["[Accept]", "[Deny]", "[Offer: 1 Wood -> 3 Gold]", "[bet]", "[4]"]
    assert restrict_moves(legal, 0) == legal
    env = SimpleNegotiation()
    env.reset(seed=0)
    _, obs = env.get_observation()
    full = list(env.legal_actions())
    small = restrict_moves(full, 2)
    assert len(full) > 100 and len(small) == 1 + 2 * 2 * 2  # [Deny] and 1-2 units each way, both directions
    model, tok = tiny
    policy = ConstrainedPolicy(tok, model, PromptFormat(tok, "auto", "compact"), max_offer_units=2)
    for r in policy.respond([obs] * 6, Sampling(1.0, 1.0, 16), [full] * 6):
        assert len(r.candidates) == len(small) and small[r.choice] in full
        assert r.text == candidate_text(small[r.choice])
    with pytest.raises(UserError, match="max_offer_units"):
        load_settings("kuhn-smollm2-think", ["rollout.max_offer_units=3"])
