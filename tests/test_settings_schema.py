"""A property test over every settings schema (spiral train, spiral sft, tm train): each field given NaN, inf,
-1, 0, 1e400, a wrong type and an over-long string is either accepted (the value is valid) or refused with one
line (UserError); nothing else escapes. New settings are covered as soon as they are added."""

from __future__ import annotations

import dataclasses

import pytest

from runkit.errors import UserError

BAD = ["nan", "inf", "-inf", "-1", "0", "1e400", "99999999999999999999999", "[[1]]", '"' + "x" * 5000 + '"',
       "{a = 1}", "true"]  # fmt: skip


def _one_line_or_fine(fn) -> str:
    try:
        fn()
    except UserError as e:
        text = str(e)
        assert text and "\n" not in text
        return "refused"
    return "accepted"


def _spiral_fields():
    from spiral.config import SECTIONS

    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("key", _spiral_fields())
def test_every_spiral_train_setting_accepts_or_refuses_in_one_line(key):
    from spiral.config import load_settings
    from spiral.training.factories import check_settings

    seen = set()
    for raw in BAD:
        seen.add(
            _one_line_or_fine(lambda raw=raw: check_settings(load_settings("tiny-test", [f"{key}={raw}"])))
        )
    assert seen  # every value was tried


@pytest.mark.parametrize("key", ["expert", "opponents", "expert_turns", "eval_turns", "rationale", "lr", "epochs",
                                 "micro_batch_size", "batch_size"])  # fmt: skip
def test_every_sft_setting_accepts_or_refuses_in_one_line(key):
    from spiral.sft import settings as sft_settings

    assert key in {f.name for f in dataclasses.fields(sft_settings.SFTSettings)}
    for raw in BAD:
        _one_line_or_fine(lambda raw=raw: sft_settings.load("sft-kuhn-smollm2", [f"sft.{key}={raw}"]))


def _tm_fields():
    from transition_matching.config import TrainConfig

    return [f.name for f in dataclasses.fields(TrainConfig)]


@pytest.mark.parametrize("key", _tm_fields())
def test_every_tm_setting_accepts_or_refuses_in_one_line(key):
    import math

    from transition_matching.config import make_config

    for value in [math.nan, math.inf, -1, 0, float("1e400"), 10**23, [[1]], "x" * 5000,
                  {"a": 1}, True]:  # fmt: skip
        _one_line_or_fine(lambda value=value: make_config(None, **{key: value}))


def test_the_cli_refuses_a_huge_seed_and_step_count_in_one_line(capsys):
    from spiral.cli import main

    for extra in (
        ["--seed", "99999999999999999999999"],
        ["--set", "run.steps=1e400"],
        ["--set", "learner.lr=nan"],
    ):
        assert main(["train", "--preset", "tiny-test", "--print-config", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "expects" in err


def test_non_finite_and_huge_numbers_are_always_refused():
    from spiral.config import load_settings

    for key in ("learner.lr", "learner.clip", "run.max_minutes", "advantage.decay"):
        for raw in ("nan", "inf", "1e400"):
            with pytest.raises(UserError):
                load_settings("tiny-test", [f"{key}={raw}"])
    for key in ("run.steps", "run.seed", "rollout.num_envs"):
        for raw in ("1e400", "99999999999999999999999", "nan"):
            with pytest.raises(UserError):
                load_settings("tiny-test", [f"{key}={raw}"])


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary\x00", b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n"])
def test_a_binary_or_deeply_nested_preset_is_one_line(tmp_path, capsys, content):
    from spiral.cli import main
    from transition_matching.cli import main as tm_main

    preset = tmp_path / "bad.toml"
    preset.write_bytes(content)
    assert main(["train", "--preset", str(preset), "--print-config"]) == 2
    assert tm_main(["train", "--preset", str(preset), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("preset" in line for line in err)


def test_a_response_budget_past_the_models_positions_is_refused_before_loading(tmp_path, capsys):
    from spiral.cli import main

    out = tmp_path / "run"
    assert (
        main(["train", "--preset", "tiny-test", "--set", "rollout.max_new_tokens=4000", "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "4096 positions" in err and not out.exists()


def _league_options():
    import argparse

    from spiral.evaluation.league.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return [a for a in parser._actions if a.option_strings and a.dest not in ("help", "json")]


@pytest.mark.parametrize("action", _league_options(), ids=lambda a: a.dest)
def test_every_league_option_accepts_or_refuses_in_one_line(action, tmp_path, capsys):
    """Each option of `spiral eval league` with each bad value: settled before any game (resolve) with exit 2
    and one line, or accepted."""
    from runkit.cli import OneLineParser
    from spiral.evaluation.league.cli import add_arguments, resolve

    parser = OneLineParser(prog="spiral eval league")
    add_arguments(parser)
    base = ["--players", "random,optimal", "--games", "KuhnPoker-v2", "--n", "2", "--chunk", "2"]
    for raw in BAD:
        argv = [*base, action.option_strings[0], raw]
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:
            assert e.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
            continue
        _one_line_or_fine(lambda args=args: resolve(args))
