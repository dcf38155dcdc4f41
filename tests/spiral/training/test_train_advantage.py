"""RAE against hand-computed numbers; the raw-return ablation; zero-advantage dropping."""

from __future__ import annotations

import pytest

from spiral.training.advantage import AdvantageEstimator, drop_zero, rae_update
from spiral.training.rollout import GameRecord, Turn


def _turn(role: int, game_id: int = 0, strict_ok: bool = False) -> Turn:
    return Turn(game_id, "G", role, [1], [2], [0.0], "x", ["[a]"], strict_ok=strict_ok)


def test_rae_update_code_order_subtracts_the_old_baseline():
    adv, b = rae_update(0.0, 1.0, 0.95, "code")
    assert adv == pytest.approx(1.0) and b == pytest.approx(0.05)
    adv, b = rae_update(b, -1.0, 0.95, "code")
    assert adv == pytest.approx(-1.05)
    assert b == pytest.approx(0.95 * 0.05 - 0.05)  # -0.0025


def test_rae_update_paper_order_updates_first():
    adv, b = rae_update(0.0, 1.0, 0.95, "paper")
    assert b == pytest.approx(0.05) and adv == pytest.approx(0.95)
    adv, b = rae_update(0.5, -1.5, 0.9, "paper")
    assert b == pytest.approx(0.9 * 0.5 + 0.1 * -1.5)  # 0.3
    assert adv == pytest.approx(-1.8)


def test_rae_update_rejects_unknown_order():
    with pytest.raises(ValueError):
        rae_update(0.0, 1.0, 0.95, "other")


def test_baselines_are_kept_per_game_and_role():
    est = AdvantageEstimator("rae", 0.5, "code")
    assert est.advantage("Kuhn", 0, 1.0) == 1.0  # b[Kuhn,0]: 0 -> 0.5
    assert est.advantage("Kuhn", 1, -1.0) == -1.0  # its own baseline, still 0 before
    assert est.advantage("TTT", 0, 1.0) == 1.0  # another game: its own baseline
    assert est.advantage("Kuhn", 0, 1.0) == pytest.approx(0.5)  # 1 - 0.5
    assert est.baselines == pytest.approx({"Kuhn/0": 0.75, "Kuhn/1": -0.5, "TTT/0": 0.5})


def test_none_estimator_returns_raw_returns_and_keeps_no_baseline():
    est = AdvantageEstimator("none")
    assert est.advantage("G", 0, -1.5) == -1.5
    assert est.advantage("G", 0, -1.5) == -1.5
    assert est.baselines == {}


def test_assign_gives_every_turn_of_a_role_its_games_advantage_once_per_game():
    est = AdvantageEstimator("rae", 0.95, "code")
    t0, t1, t2 = _turn(0), _turn(1), _turn(0)
    game = GameRecord(0, "G", {0: 1.0, 1: -1.0}, [0, 1], {}, [t0, t1, t2])
    est.assign([game])
    assert t0.advantage == t2.advantage == 1.0  # one baseline update per game, not per turn
    assert t1.advantage == -1.0
    assert est.baselines == pytest.approx({"G/0": 0.05, "G/1": -0.05})


def test_state_dict_round_trip():
    est = AdvantageEstimator("rae")
    est.advantage("G", 1, 1.0)
    other = AdvantageEstimator("rae")
    other.load_state_dict(est.state_dict())
    assert other.baselines == est.baselines


def test_drop_zero_drops_exact_zeros_after_the_format_bonus():
    a, b, c = _turn(0), _turn(0, strict_ok=True), _turn(1)
    a.advantage, b.advantage, c.advantage = 0.0, 0.0, -0.5
    assert drop_zero([a, b, c]) == [c]
    kept = drop_zero([a, b, c], format_bonus=0.1)
    assert kept == [b, c] and b.advantage == pytest.approx(0.1)


def test_drop_zero_keeps_every_turn_when_asked():
    a, c = _turn(0), _turn(1)
    a.advantage, c.advantage = 0.0, -0.5
    assert drop_zero([a, c], keep=True) == [a, c] and a.advantage == 0.0


def _games(n: int) -> list[GameRecord]:
    out = []
    for i in range(n):
        r = 1.0 if i % 3 else -1.0
        out.append(GameRecord(i, "G", {0: r, 1: -r}, [0, 1], {}, [_turn(0, i), _turn(1, i)]))
    return out


def test_random_sign_control_keeps_magnitudes_and_drops_the_signal():
    plain, control = AdvantageEstimator("none"), AdvantageEstimator("none", control="random_sign", seed=3)
    a, b = _games(400), _games(400)
    plain.assign(a)
    control.assign(b)
    pa = [t.advantage for g in a for t in g.turns]
    pb = [t.advantage for g in b for t in g.turns]
    assert [abs(x) for x in pa] == [abs(x) for x in pb]  # the same magnitudes
    agree = sum(x == y for x, y in zip(pa, pb, strict=True)) / len(pa)
    assert 0.4 < agree < 0.6  # independent of the real sign
    assert control.draws == 800  # one sign per (game, role)


def test_random_sign_stream_resumes_from_a_checkpoint():
    whole = AdvantageEstimator("rae", control="random_sign", seed=5)
    games = _games(20)
    whole.assign(games)
    first = AdvantageEstimator("rae", control="random_sign", seed=5)
    first.assign(_games(20)[:10])
    resumed = AdvantageEstimator("rae", control="random_sign", seed=5)
    resumed.load_state_dict(first.state_dict())
    rest = _games(20)[10:]
    resumed.assign(rest)
    assert [t.advantage for g in rest for t in g.turns] == [t.advantage for g in games[10:] for t in g.turns]
    other = AdvantageEstimator("rae", control="random_sign", seed=6)
    again = _games(20)
    other.assign(again)
    assert [t.advantage for g in again for t in g.turns] != [t.advantage for g in games for t in g.turns]
