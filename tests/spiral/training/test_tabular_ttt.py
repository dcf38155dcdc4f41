"""The TicTacToe tabular twin: real games through the project's collector, RAE and PPO-clip; with enough turns
the table loses less to minimax than the uniform table it starts as."""

from spiral.tabular_ttt import TTTSettings, train_ttt


def test_the_twin_learns_against_minimax_with_enough_turns():
    r = train_ttt(TTTSettings(turns=20_000, entropy_coef=0.03, eval_games=200, seed=0))
    before, after = r["before"]["optimal"], r["after"]["optimal"]
    assert r["turns"] >= 20_000 and 0 < r["boards"] <= 6000
    assert after["loss_rate"] < before["loss_rate"] - 0.04
    assert r["after"]["random"]["win_rate"] > r["before"]["random"]["win_rate"]
