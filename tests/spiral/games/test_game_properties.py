"""Property tests for every built-in game: any text is safe, games end, rewards are zero-sum, secrets stay secret."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral.games import make
from spiral.games.core import MAX_ACTION_CHARS

GAMES = ["TicTacToe-v0", "KuhnPoker-v1", "KuhnPoker-v2", "SimpleNegotiation-v1"]
TRICKY = [
    "",
    "\\boxed{}",
    "\\boxed{",
    "\\boxed{\\boxed{[4]}}",
    "\\fbox{\\text{BET}}",
    "[Offer: 3 Wood -> 2 Gold]",
    "\\boxed{[Offer: 99999 Gold -> 1 Wood]}",
    "\\boxed{[Accept] [Deny] [Offer: 1 Gold -> 1 Wood]}",
    "[4] [bet] [Accept]",
    "}}}{{{",
    "\\boxed{[-1]}",
]
# A move is a legal action (by index, in a random wrapping) or arbitrary text.
MOVES = st.lists(
    st.one_of(
        st.tuples(st.integers(0, 10_000), st.integers(0, 3)), st.text(max_size=60), st.sampled_from(TRICKY)
    ),
    max_size=60,
)
WRAPS = ("{}", "\\boxed{{{}}}", "I choose \\boxed{{{}}}.", "\\boxed{{{}}}")


def _text_of(move, legal: list[str]) -> str:
    if isinstance(move, str):
        return move
    index, wrap = move
    if not legal:
        return ""
    action = legal[index % len(legal)]
    if wrap == 3:  # bare word inside the box, another case
        action = action.strip("[]").upper()
    return WRAPS[wrap].format(action)


@pytest.mark.parametrize("env_id", GAMES)
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), moves=MOVES, penalty=st.sampled_from(["train", "eval"]))
def test_any_text_is_safe_and_rewards_are_zero_sum(env_id: str, seed: int, moves: list, penalty: str) -> None:
    env = make(env_id, invalid_penalty=penalty)
    env.reset(seed=seed)
    done = False
    for move in moves:
        player, obs = env.get_observation()
        assert isinstance(obs, str) and f"You are Player {player}" in obs and len(obs) < 2500
        done, info = env.step(_text_of(move, env.legal_actions()))
        assert isinstance(done, bool) and isinstance(info, dict)
        if done:
            break
    rewards, info = env.close()
    assert set(rewards) == {0, 1} and {"outcome", "reason", "turns", "invalid_player"} <= set(info)
    assert info["turns"] <= env.max_turns
    if info["invalid_player"] is None:
        ended = info["reason"] != "game closed before it ended"  # an aborted game is a 0 / 0 draw
        chips = getattr(env, "reward", "outcome") == "chips" and ended  # KuhnPoker-v2 pays net chips
        allowed = (float(info["chips"][0]),) if chips else (-1.0, 0.0, 1.0)
        assert rewards[0] + rewards[1] == 0 and rewards[0] in allowed
    else:
        offender = info["invalid_player"]
        expected = (-1.5, 0.0) if penalty == "train" else (-1.0, 1.0)
        assert (rewards[offender], rewards[1 - offender]) == expected


@pytest.mark.parametrize("env_id", GAMES)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_legal_play_ends_within_the_turn_limit(env_id: str, seed: int) -> None:
    env, rng = make(env_id), random.Random(seed)
    env.reset(seed=seed)
    for _ in range(env.max_turns):
        done, info = env.step(rng.choice(env.legal_actions()))
        assert not info.get("invalid_move")
        if done:
            break
    assert env.done
    rewards, info = env.close()
    assert info["invalid_player"] is None and rewards[0] == -rewards[1]


@pytest.mark.parametrize("env_id", ["KuhnPoker-v1", "KuhnPoker-v2"])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_kuhn_observation_never_depends_on_the_opponents_card(env_id: str, seed: int) -> None:
    env, rng = make(env_id), random.Random(seed)
    env.reset(seed=seed)
    while not env.done:
        player, obs = env.get_observation()
        mine = env.deals[env.round][player]
        for other in (c for c in range(3) if c != mine):
            deal = list(env.deals[env.round])
            deal[1 - player] = other
            saved, env.deals[env.round] = env.deals[env.round], tuple(deal)
            assert env.render(player) == obs
            env.deals[env.round] = saved
        env.step(rng.choice(env.legal_actions()))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), values=st.tuples(st.integers(1, 30), st.integers(1, 30)))
def test_negotiation_observation_never_depends_on_the_opponents_values(seed: int, values: tuple) -> None:
    rng = random.Random(seed)
    base = make("SimpleNegotiation-v1")
    for hidden in (0, 1):  # change the values of one player, watch the other's observations
        vals = [(5, 15), (15, 5)]
        vals[hidden] = values
        other = make("SimpleNegotiation-v1", values=tuple(vals))
        base.reset(seed=seed)
        other.reset(seed=seed)
        while not base.done:
            player, obs = base.get_observation()
            if player != hidden:
                assert other.get_observation()[1] == obs
            action = rng.choice(base.legal_actions())
            base.step(action)
            other.step(action)


@pytest.mark.parametrize("env_id", GAMES)
def test_a_reply_past_the_length_cap_is_an_invalid_move_with_its_reason(env_id: str) -> None:
    env = make(env_id)
    env.reset(seed=0)
    legal = env.legal_actions()[0]
    done, info = env.step("x" * MAX_ACTION_CHARS + f"\\boxed{{{legal}}}")
    assert done and info["invalid_move"]
    assert f"a move may be at most {MAX_ACTION_CHARS:,}" in info["reason"]
    # Just under the cap, the same move is taken.
    env.reset(seed=0)
    done, info = env.step("x" * (MAX_ACTION_CHARS - 40) + f"\\boxed{{{legal}}}")
    assert not info.get("invalid_move")
