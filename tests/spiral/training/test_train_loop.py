"""Settings and presets, `spiral train` errors, a tiny run end to end, exact resume, checkpoints as agents."""

from __future__ import annotations

import json

import pytest

from runkit.errors import UserError
from runkit.metrics import read_metrics
from spiral.cli import main
from spiral.config import Settings, load_settings, preset_names

TINY = ["--preset", "tiny-test", "--threads", "1", "--set", "run.plots=false"]


def test_every_preset_loads_and_validates():
    names = preset_names()
    assert {"kuhn-smollm2-cpu", "tictactoe-smollm2-cpu", "multigame-smollm2-cpu", "tiny-test",
            "demo-kuhn-smollm2", "guess-tiny", "kuhn-smollm2-freeform", "tictactoe-smollm2-freeform",
            "kuhn-smollm2-constrained"} <= set(names)  # fmt: skip
    for name in names:
        s = load_settings(name)
        assert s.preset == name and s.rollout.env_ids
    # the SmolLM2 game presets carry the recipe that learned; the free-form ones keep the warm-up
    for name in (
        "kuhn-smollm2-cpu",
        "tictactoe-smollm2-cpu",
        "demo-kuhn-smollm2",
        "kuhn-smollm2-constrained",
    ):
        s = load_settings(name)
        assert (s.rollout.action_mode, s.learner.entropy_coef, s.warmup.rounds) == ("constrained", 0.3, 0), (
            name
        )
    for name in ("kuhn-smollm2-freeform", "tictactoe-smollm2-freeform"):
        s = load_settings(name)
        assert s.rollout.action_mode != "constrained" and s.warmup.rounds > 0, name


def test_overrides_are_typed_and_reach_nested_tables():
    s = load_settings("tiny-test", ["learner.lr=3e-5", "rollout.env_ids=TicTacToe-v0,KuhnPoker-v2",
                                    "model.lora=true", "rollout.env_kwargs.TicTacToe-v0.x=1"])  # fmt: skip
    assert s.learner.lr == 3e-5 and s.model.lora is True
    assert s.rollout.env_ids == ["TicTacToe-v0", "KuhnPoker-v2"]
    assert s.rollout.env_kwargs["TicTacToe-v0"] == {"x": 1}
    assert Settings.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["learner.nope=1"], "unknown setting"),
        (["learner.lr=fast"], "expects float"),
        (["rollout.turns_per_step=0"], "must be > 0"),
        (["rollout.parse_mode=loose"], "must be one of"),
        (["advantage.decay=1.5"], "decay"),
        (["rollout.temperature=0"], "temperature"),
        (["rollout.think_temperature=-0.5"], "temperatures must lie"),
    ],
)
def test_impossible_settings_are_one_line_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        load_settings("tiny-test", overrides)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "no-such-preset"], "unknown preset"),
        (["--preset", "tiny-test", "--env", "NoSuchGame-v0"], "unknown game"),
        (["--preset", "tiny-test", "--model", "/no/such/model"], "unknown model"),
        (["--preset", "tiny-test", "--set", "rollout.env_kwargs.KuhnPoker-v2.colour=1"], "bad option"),
    ],
)
def test_cli_bad_input_exits_non_zero_with_one_line(args, message, tmp_path, capsys):
    code = main(["train", *args, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_print_config_shows_resolved_settings(capsys):
    assert main(["train", *TINY, "--steps", "7", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["steps"] == 7
    assert main(["train", "--help-settings"]) == 0
    assert "learner.loss_norm = 4096.0" in capsys.readouterr().out


def _strip(rows):
    skip = ("time", "seconds", "per_s")
    return [{k: v for k, v in r.items() if not any(s in k for s in skip)} for r in rows]


@pytest.mark.slow
def test_tiny_run_checkpoints_and_resumes_exactly(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["train", *TINY, "--steps", "3", "--out", str(whole), "--set", "run.plots=true"]) == 0
    assert (whole / "report.html").is_file() and (whole / "plots" / "invalid_rate.png").is_file()
    phases = json.loads((whole / "phases.json").read_text())
    assert [p["phase"] for p in phases] == ["base", "after_selfplay"]
    assert main(["train", *TINY, "--steps", "2", "--out", str(part)]) == 0
    assert main(["train", "--resume", str(part), "--steps", "3", "--threads", "1"]) == 0
    a, b = read_metrics(whole / "metrics.jsonl"), read_metrics(part / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 1, 2, 3]
    assert a[-1]["train/loss"] == b[-1]["train/loss"]  # the step after the resume is the same step
    assert _strip(a) == _strip(b)
    for key in ("rollout/invalid_rate", "rollout/invalid_rate_strict", "rollout/invalid_rate_lenient",
                "train/grad_norm", "eval/KuhnPoker-v2/random/win_rate", "eval/KuhnPoker-v2/optimal/win_rate"):  # fmt: skip
        assert any(key in r for r in a), key
    state = json.loads((whole / "checkpoints" / "step_000003" / "state.json").read_text())
    assert "estimator" in json.dumps(state) and (whole / "eval" / "0_base" / "summary.json").is_file()

    # the checkpoint loads in transformers as it is, and as an agent through the game layer's factory
    from transformers import AutoModelForCausalLM

    from spiral.agents import make_agent

    AutoModelForCausalLM.from_pretrained(whole / "checkpoints" / "step_000003")
    agent = make_agent(str(whole), "KuhnPoker-v2", seed=0, max_new_tokens=4)
    assert isinstance(agent.act("You are Player 0.", ["[check]", "[bet]"]), str)

    # a frozen earlier checkpoint as the fixed opponent of the other seat; its sampler resumes exactly too
    vs, vs_part = tmp_path / "vs-frozen", tmp_path / "vs-frozen-part"
    frozen = ["--opponent", str(whole), "--set", "eval.every=0", "--set", "eval.at_start=false"]
    assert main(["train", *TINY, *frozen, "--steps", "2", "--out", str(vs)]) == 0
    assert read_metrics(vs / "metrics.jsonl")[-1]["rollout/turns_kept"] == 8
    assert main(["train", *TINY, *frozen, "--steps", "1", "--out", str(vs_part)]) == 0
    assert main(["train", "--resume", str(vs_part), "--steps", "2", "--threads", "1"]) == 0

    # the shorter run evaluated at its end (step 1); evaluation leaves the training streams untouched
    def training(rows):
        return [{k: v for k, v in r.items() if not k.startswith("eval/")} for r in _strip(rows)]

    assert training(read_metrics(vs / "metrics.jsonl")) == training(read_metrics(vs_part / "metrics.jsonl"))
    import torch

    from runkit.checkpoint import load_checkpoint

    ends = [
        load_checkpoint(r / "checkpoints" / "step_000002").state["opponent_gen_rng"] for r in (vs, vs_part)
    ]
    assert ends[0].keys() == ends[1].keys() == {"KuhnPoker-v2"}
    assert torch.equal(ends[0]["KuhnPoker-v2"], ends[1]["KuhnPoker-v2"])  # the opponent's sampler resumed too

    assert main(["plot", str(part), "--summary", str(tmp_path / "summary.png")]) == 0
    assert (part / "plots" / "invalid_rate.png").is_file() and (part / "plots" / "loss.png").is_file()
    assert (tmp_path / "summary.png").read_bytes().startswith(b"\x89PNG")


def test_zero_advantage_turns_are_trained_only_when_asked(tmp_path):
    # invalid answers score 0 for both seats and the advantage is the return: the tiny model's turns are ~all 0
    zero = ["--steps", "1", "--set", "advantage.estimator=none", "--set", "rollout.invalid_penalty=[0.0,0.0]",
            "--set", "eval.at_start=false", "--set", "eval.every=0"]  # fmt: skip
    rows = {}
    for keep in ("false", "true"):
        out = tmp_path / keep
        assert (
            main(["train", *TINY, *zero, "--set", f"learner.train_zero_advantage={keep}", "--out", str(out)])
            == 0
        )
        rows[keep] = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
    for r in rows.values():
        assert r["rollout/zero_adv_frac"] > 0.5
    dropped, kept = rows["false"], rows["true"]
    assert dropped["train/samples"] == round(
        dropped["rollout/turns_kept"] * (1 - dropped["rollout/zero_adv_frac"])
    )
    assert kept["train/samples"] == kept["rollout/turns_kept"]


def test_a_run_folder_with_checkpoints_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints" / "step_000001").mkdir(parents=True)
    (run / "checkpoints" / "step_000001" / "manifest.json").write_text("{}")
    assert main(["train", *TINY, "--out", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_plot_of_a_missing_run_is_a_user_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err
