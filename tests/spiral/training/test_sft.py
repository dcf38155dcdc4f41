"""`spiral sft`: expert examples in the self-play template, a tiny run that learns the expert's moves, presets."""

from __future__ import annotations

import json

import pytest
import torch

from runkit.errors import UserError
from runkit.metrics import read_metrics
from spiral.agents.minimax import best_moves
from spiral.cli import main
from spiral.generation.actions import Candidates
from spiral.model import PromptFormat
from spiral.sft.expert import examples, play_expert
from spiral.sft.settings import load, preset_names


def test_expert_turns_are_exact_accepted_and_in_the_self_play_template(smol_tokenizer):
    kw = {"KuhnPoker-v2": {"rounds": 1}}
    turns = play_expert(["KuhnPoker-v2", "TicTacToe-v0"], kw, "optimal", ["self", "random"], 101, seed=5)
    assert len(turns) == 101 and {t.env_id for t in turns} == {"KuhnPoker-v2", "TicTacToe-v0"}
    assert turns == play_expert(
        ["KuhnPoker-v2", "TicTacToe-v0"], kw, "optimal", ["self", "random"], 101, seed=5
    )
    for t in turns:
        assert t.move in t.legal and t.response == "\\boxed{" + t.move.strip("[]") + "}"
        if t.env_id == "TicTacToe-v0":  # minimax: one of the optimal cells of the position
            assert int(t.move.strip("[]")) in best_moves(_board(t.observation))
    fmt = PromptFormat(smol_tokenizer, "auto", "compact")
    eos = smol_tokenizer.eos_token_id
    constrained = examples(turns[:6], fmt, smol_tokenizer, True, eos)
    cands = Candidates(smol_tokenizer)
    for e, t in zip(constrained, turns, strict=False):
        assert e.prompt_ids == fmt.encode([t.observation])[0]  # the prompt self-play renders
        assert e.response_ids == cands.ids(t.move)  # exactly the candidate constrained decoding scores
    free = examples(turns[:6], fmt, smol_tokenizer, False, eos)
    assert all(e.response_ids[-1] == eos and len(e.response_ids) == len(c.response_ids) + 1
               for e, c in zip(free, constrained, strict=True))  # fmt: skip


def _board(observation: str) -> str:
    from spiral.games.tictactoe import board_from_observation

    return board_from_observation(observation)


def test_rationales_name_the_state():
    kuhn = play_expert(["KuhnPoker-v2"], {"KuhnPoker-v2": {"rounds": 1}}, "optimal", ["self"], 20, 1, True)
    assert all(t.rationale.startswith("My card is the ") and t.response.endswith("}") for t in kuhn)
    assert any("my opponent checked" in t.rationale for t in kuhn)
    ttt = play_expert(["TicTacToe-v0"], {}, "optimal", ["random"], 10, 2, True)
    assert all("With best play from both sides" in t.rationale and "a loss" not in t.rationale for t in ttt)


def test_sft_on_a_tiny_model_lowers_the_loss_and_raises_agreement(tmp_path, capsys):
    out = tmp_path / "sft"
    assert main(["sft", "--preset", "sft-tiny", "--out", str(out), "--threads", "1"]) == 0
    summary = json.loads((out / "sft.json").read_text())
    assert summary["sft/expert_turns"] == 64  # the count is stated (also in metrics.jsonl and the log)
    before, after = summary["before"], summary["after"]
    assert after["heldout_loss"] < 0.7 * before["heldout_loss"]
    assert after["agreement"] > before["agreement"]
    rows = read_metrics(out / "metrics.jsonl")
    assert rows[0]["step"] == 0 and rows[-1]["step"] == summary["updates"] == 8
    assert "eval/KuhnPoker-v2/random/win_rate" in rows[-1] and "eval/exploitability" in rows[-1]
    # the run folder is a spiral run folder: phases, checkpoint format, an agent spec
    assert (out / "eval" / "0_base" / "summary.json").is_file()
    assert (out / "eval" / "1_after_sft" / "summary.json").is_file()
    assert json.loads((out / "config.json").read_text())["kind"] == "spiral-sft"
    from spiral.agents import make_agent

    agent = make_agent(str(out), "KuhnPoker-v2", seed=0)
    assert agent.act("You are Player 0 ... Your card: K", ["[check]", "[bet]"]) in (
        "\\boxed{check}",
        "\\boxed{bet}",
    )
    from spiral.report import build_report

    page = build_report(out).read_text()
    assert (
        "Supervised fine-tuning (spiral sft)" in page and "agreement" in page and "eval/1_after_sft" in page
    )
    text = capsys.readouterr().out
    assert "64 expert turns" in text and "agreement:" in text
    assert (
        main(["sft", "--preset", "sft-tiny", "--out", str(out)]) == 2
    )  # a finished run is never overwritten


def test_presets_load_and_bad_settings_are_one_line(capsys):
    assert {"sft-kuhn-smollm2", "sft-tictactoe-smollm2", "sft-negotiation-smollm2", "sft-tiny"} <= set(
        preset_names()
    )
    for name in preset_names():
        s, sft = load(name)
        assert sft.expert_turns > 0 and s.rollout.env_ids
    s, sft = load("sft-kuhn-smollm2")
    assert (s.rollout.action_mode, s.model.lora, s.model.prompt_style) == ("constrained", True, "compact")
    assert (
        s.rollout.env_kwargs == {"KuhnPoker-v2": {"rounds": 1, "reward": "chips"}}
        and sft.expert_turns == 2048
    )
    assert load("sft-tictactoe-smollm2")[1].opponents == ["self", "random"] == sft.opponents
    # Nash (alpha 0) never opens with a bet: the games against random show the responder facing one
    from spiral.games.kuhn_poker import infoset_from_observation

    turns = play_expert(["KuhnPoker-v2"], s.rollout.env_kwargs, sft.expert, sft.opponents, 128, s.run.seed)
    assert len({infoset_from_observation(t.observation) for t in turns}) == 12
    with pytest.raises(UserError, match="rationale needs free-form"):
        load("sft-kuhn-smollm2", ["sft.rationale=true"])
    with pytest.raises(UserError, match="unknown setting sft.nope"):
        load("sft-tiny", ["sft.nope=1"])
    assert main(["sft", "--preset", "no-such"]) == 2
    assert "unknown preset 'no-such'; known: sft-kuhn-smollm2" in capsys.readouterr().err
    assert main(["sft", "--preset", "sft-tiny", "--expert-turns", "7", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["sft"]["expert_turns"] == 7


def test_noise_scale_recovers_a_planted_signal_and_variance():
    from spiral.sft.noise import noise_scale, signal_share

    gen = torch.Generator().manual_seed(0)
    P, K, small = 2000, 400, 8
    G = torch.full((P,), 0.05)  # |G|^2 = 5
    sigma = 0.2  # per-turn, per-coordinate: tr(S) = 0.04 * 2000 = 80, B_noise = 16
    rows = G + sigma / small**0.5 * torch.randn((K, P), generator=gen)
    est = noise_scale(rows, small)
    assert est["signal"] == pytest.approx(5.0, rel=0.05) and est["trace"] == pytest.approx(80.0, rel=0.05)
    assert est["b_noise"] == pytest.approx(16.0, rel=0.1)
    assert signal_share(est, 16) == pytest.approx(0.5, abs=0.03)
    assert signal_share(est, 160) == pytest.approx(160 / 176, abs=0.01)
    pure = noise_scale(sigma * torch.randn((K, P), generator=gen), small)  # no signal: B_noise huge or inf
    assert pure["b_noise"] > 1000 and signal_share(pure, 246) < 0.2
    with pytest.raises(ValueError):
        noise_scale(rows[:1], small)
