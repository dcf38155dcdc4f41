"""The tabular twin pins the objective: a softmax table trained by the project's own collector, RAE and PPO-clip
code reaches a low exploitability in OpenSpiel's sense with chip rewards, and cannot with +1/-1 outcomes."""

from __future__ import annotations

import pytest

from spiral.agents.kuhn import KEYS, average_policy, exploitability, nash_policy, own_reach, uniform_policy
from spiral.tabular import TabularSettings, train_tabular


def test_chip_rewards_reach_exploitability_0_15():
    r = train_tabular(TabularSettings(reward="chips", turns=16_000, lr=0.02, seed=0))
    assert r.turns[0] == 0 and r.exploitability[0] == pytest.approx(0.4583, abs=1e-3)  # uniform at the start
    assert r.exploitability[-1] <= 0.15 and r.avg_exploitability[-1] <= 0.15
    assert r.first_turns_below(0.15) is not None


def test_outcome_rewards_never_get_there():
    r = train_tabular(TabularSettings(reward="outcome", turns=16_000, lr=0.02, seed=0))
    assert min(r.exploitability) > 0.2 and min(r.avg_exploitability) > 0.2
    assert (
        r.final_policy["Qb"] > 0.9 and r.final_policy["Kb"] > 0.9
    )  # Q and K call: the +-1 game's equilibria


@pytest.mark.parametrize(
    "lever", [{"entropy_coef": 0.05}, {"kl_coef": 0.05}, {"pool_size": 4, "pool_every": 5}]
)
def test_each_stability_lever_runs_and_still_learns(lever):
    r = train_tabular(TabularSettings(reward="chips", turns=6_000, lr=0.05, seed=1, **lever))
    assert min(r.exploitability) < 0.25


def test_average_policy_weights_by_own_reach():
    nash = nash_policy(0.2)
    assert average_policy([nash, nash]) == pytest.approx(nash)
    a, b = dict(uniform_policy()), dict(uniform_policy())
    a["J"], a["Jpb"] = 0.0, 1.0  # always checks J, then calls
    b["J"], b["Jpb"] = 1.0, 0.0  # always bets J: never reaches Jpb
    avg = average_policy([a, b])
    assert avg["J"] == pytest.approx(0.5) and avg["Jpb"] == pytest.approx(1.0)  # only `a` reaches Jpb
    assert own_reach(b, "Jpb") == 0.0 and all(own_reach(a, k) == 1.0 for k in KEYS if not k.endswith("pb"))
    assert exploitability(average_policy([nash_policy(0.0), nash_policy(1 / 3)])) == pytest.approx(
        0.0, abs=1e-9
    )


def test_shared_twin_starts_card_blind_and_sits_on_the_plateau():
    """card_scale > 0: logits shared per betting history plus a weak per-card table; the same 8,000 turns that
    take the plain table to ~0.1 leave the shared twin on the card-blind plateau (~1/3), as the LM sits there."""
    plain = train_tabular(TabularSettings(reward="chips", turns=8_000, seed=0))
    shared = train_tabular(TabularSettings(reward="chips", turns=8_000, seed=0, card_scale=0.1))
    assert min(plain.exploitability) < 0.2
    assert min(shared.exploitability) > 0.3 and abs(shared.exploitability[-1] - 1 / 3) < 0.02
    pol = shared.final_policy  # card-blind: every card plays one history alike
    for hist in ("", "p", "b", "pb"):
        assert max(pol[c + hist] for c in "JQK") - min(pol[c + hist] for c in "JQK") < 0.1
