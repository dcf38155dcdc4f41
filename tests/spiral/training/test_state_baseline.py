"""RAE keyed by state: each turn's advantage is its return minus the baseline of its own prompt."""

from __future__ import annotations

import pytest

from spiral.training.advantage import AdvantageEstimator
from spiral.training.rollout import GameRecord, Turn


def _game(gid: int, prompt: int, ret: float) -> GameRecord:
    turn = Turn(gid, "G", 0, [prompt], [1], [0.0], "", [])
    return GameRecord(gid, "G", {0: ret, 1: -ret}, [0], {}, [turn])


def test_state_baselines_separate_prompts_and_start_from_the_role():
    est = AdvantageEstimator("rae", decay=0.5, key_by="state")
    lucky = [_game(i, prompt=7, ret=2.0) for i in range(6)]  # a prompt that always wins 2
    est.assign(lucky)
    assert lucky[0].turns[0].advantage == 2.0  # new prompt, role baseline 0
    assert lucky[-1].turns[0].advantage == pytest.approx(2.0 * 0.5**5)  # its own baseline nears 2
    unlucky = _game(99, prompt=8, ret=-1.0)  # a new prompt starts from the role's baseline, not from 2
    role_before = est.baselines["G/0"]
    est.assign([unlucky])
    assert unlucky.turns[0].advantage == pytest.approx(-1.0 - role_before)
    assert any("#" in k for k in est.baselines) and "G/0" in est.baselines


def test_role_baseline_is_the_papers_rae():
    est = AdvantageEstimator("rae", decay=0.5)
    games = [_game(0, 7, 2.0), _game(1, 8, 2.0)]
    est.assign(games)
    assert [g.turns[0].advantage for g in games] == [2.0, 1.0]  # the second prompt shares the role baseline
    assert set(est.baselines) == {"G/0"}
