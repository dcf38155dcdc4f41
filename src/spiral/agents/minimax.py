"""Perfect Tic-Tac-Toe play by memoised negamax; it never loses."""

from __future__ import annotations

import random
from functools import cache

from spiral.agents.base import Agent
from spiral.games.tictactoe import EMPTY, MARKS, board_from_observation, winner_of


def _to_move(board: str) -> str:
    """X moves when both have placed the same number of marks."""
    return MARKS[0] if board.count(MARKS[0]) == board.count(MARKS[1]) else MARKS[1]


@cache
def solve(board: str) -> int:
    """Negamax value for the player to move: +(10 - moves) for a win, 0 draw; faster wins score higher."""
    if winner_of(board) is not None:  # the previous mover just won
        return -(10 - (9 - board.count(EMPTY)))
    if EMPTY not in board:
        return 0
    mark = _to_move(board)
    return max(-solve(board[:i] + mark + board[i + 1 :]) for i in range(9) if board[i] == EMPTY)


def best_moves(board: str) -> list[int]:
    """All cells that reach the negamax value of the position."""
    mark = _to_move(board)
    scores = {i: -solve(board[:i] + mark + board[i + 1 :]) for i in range(9) if board[i] == EMPTY}
    best = max(scores.values())
    return [i for i, s in scores.items() if s == best]


class MinimaxAgent(Agent):
    """Optimal Tic-Tac-Toe; ties between equally good moves are broken at random (seeded)."""

    name = "minimax"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    def act(self, observation: str, legal_actions: list[str], env=None) -> str:
        """A best move, read from env.board when given, else from the observation's board."""
        board = "".join(env.board) if env is not None and hasattr(env, "board") else None
        if board is None:
            board = board_from_observation(observation)
        return f"[{self.rng.choice(best_moves(board))}]"
