"""TicTacToe-v0: 3x3, cells 0-8, Player 0 plays X and moves first."""

from __future__ import annotations

import re

from spiral.games.core import TextGame

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
TOKENS = tuple(f"[{i}]" for i in range(9))
MARKS = ("X", "O")
EMPTY = " "

_RULES = (
    "You are Player {p} in Tic-Tac-Toe, a two-player zero-sum game. You play {me}; your opponent plays "
    "{them}. Player 0 (X) moves first.\n"
    "Rules: on your turn mark one empty cell (numbered 0-8). Three of your marks in a row, column or "
    "diagonal win; a full board without a line is a draw.\n"
)
_HEADERS = tuple(_RULES.format(p=p, me=MARKS[p], them=MARKS[1 - p]) for p in (0, 1))


def winner_of(board: list[str] | str) -> str | None:
    """The mark with three in a line, or None."""
    for a, b, c in LINES:
        m = board[a]
        if m != EMPTY and m == board[b] == board[c]:
            return m
    return None


def render_board(board: list[str] | str) -> str:
    """The board with marks, and cell numbers in empty cells."""
    cells = [board[i] if board[i] != EMPTY else str(i) for i in range(9)]
    rows = [f" {cells[r]} | {cells[r + 1]} | {cells[r + 2]}" for r in (0, 3, 6)]
    return "\n---+---+---\n".join(rows)


_BOARD_LINE = re.compile(r"^ (\S) \| (\S) \| (\S)$", re.MULTILINE)


def board_from_observation(observation: str) -> str:
    """Recover the board (9 characters, ' ' for empty) from a rendered observation."""
    cells = [c for row in _BOARD_LINE.findall(observation) for c in row]
    if len(cells) != 9:
        raise ValueError("observation has no Tic-Tac-Toe board")
    return "".join(c if c in MARKS else EMPTY for c in cells)


class TicTacToe(TextGame):
    """Tic-Tac-Toe with text observations and \\boxed{} actions."""

    env_id = "TicTacToe-v0"
    game_name = "Tic-Tac-Toe"
    max_turns = 9

    def new_game(self) -> None:
        """Empty board."""
        self.board = [EMPTY] * 9
        self.moves: list[int] = []
        self._legal: list[str] | None = None

    def legal_actions(self) -> list[str]:
        """Tokens of the empty cells, e.g. ['[0]', '[4]']."""
        if self._legal is None:
            self._legal = [TOKENS[i] for i in range(9) if self.board[i] == EMPTY]
        return self._legal

    def apply(self, action: str) -> None:
        """Mark the cell; check for a line or a full board."""
        cell = int(action[1:-1])
        self.board[cell] = MARKS[self.player]
        self.moves.append(cell)
        self._legal = None
        if winner_of(self.board) is not None:
            self.finish(self.player, f"Player {self.player} made three in a row")
        elif len(self.moves) == 9:
            self.finish(None, "the board is full: draw")
        else:
            self.player ^= 1

    def render(self, player: int) -> str:
        """Rules, move list, board and legal moves."""
        history = ", ".join(f"P{i % 2}:[{c}]" for i, c in enumerate(self.moves)) or "none"
        return (
            f"{_HEADERS[player]}"
            f"Moves so far: {history}\n"
            f"Board:\n{render_board(self.board)}\n"
            f"Your legal actions: {' '.join(self.legal_actions())}"
        )

    def extra_info(self) -> dict:
        """The final board and the move list."""
        return {"board": "".join(self.board), "moves": list(self.moves)}
