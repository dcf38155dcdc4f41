"""Expert trajectories: the game's optimal agent plays games, each of its turns becomes a fine-tuning example.

An example is (the observation's prompt in the policy's template, as self-play renders it; the response
`\\boxed{move}`, optionally after a short templated rationale). Free-form responses end with the stop token, as
the warm-up's do; under constrained decoding the response is exactly the move's candidate (the tokens
`spiral.generation.actions` scores), so SFT trains what the constrained policy plays. Games are stepped with
the response text itself, so every example is a move the game accepts as the expert's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from runkit.errors import UserError
from spiral.generation.actions import Candidates, candidate_text
from spiral.prompting import normalize_action
from spiral.training.rollout import Turn

CARD_NAMES = {"J": "Jack", "Q": "Queen", "K": "King"}
KUHN_HISTORY = {
    "": "I act first",
    "p": "my opponent checked",
    "b": "my opponent bet",
    "pb": "I checked and my opponent bet",
}


@dataclass
class ExpertTurn:
    """One move of the expert: what it saw, what it could do, what it did."""

    env_id: str
    game: int
    role: int
    observation: str
    legal: list[str]
    move: str
    rationale: str = ""

    @property
    def response(self) -> str:
        """The response text of the example (without the stop token)."""
        box = candidate_text(self.move)
        return f"{self.rationale}\n{box}" if self.rationale else box


def rationale(env_id: str, env, player: int, move: str) -> str:
    """A short templated reason for `move`, true of the position (it names the state, not a strategy)."""
    word = normalize_action(move)
    if env_id.startswith("KuhnPoker-") and hasattr(env, "infoset_key"):
        key = env.infoset_key(player)
        history = KUHN_HISTORY.get(key[1:], "")
        return f"My card is the {CARD_NAMES[key[0]]}{', ' + history if history else ''}. I {word}."
    if env_id == "TicTacToe-v0" and hasattr(env, "board"):
        from spiral.agents.minimax import solve

        board = "".join(env.board)
        mark = "X" if board.count("X") == board.count("O") else "O"
        cell = int(word)
        value = -solve(board[:cell] + mark + board[cell + 1 :])
        result = "a win" if value > 0 else "a draw" if value == 0 else "a loss"
        return f"With best play from both sides, cell {cell} leads to {result} for me. I play {cell}."
    return f"I play {word}."


def play_expert(
    env_ids: list[str],
    env_kwargs: dict[str, dict],
    expert: str,
    opponents: list[str],
    turns: int,
    seed: int,
    with_rationale: bool = False,
) -> list[ExpertTurn]:
    """Exactly `turns` expert turns: games in turn over the games and the opponents (`self` = the expert in both
    seats; against an opponent the expert's seat alternates), stopped when enough turns are in."""
    from spiral.agents import make_agent
    from spiral.games import make

    rng = random.Random(seed)
    experts = {e: make_agent(expert, e, seed=rng.randrange(2**31)) for e in env_ids}
    others = {
        (e, o): make_agent(o, e, seed=rng.randrange(2**31)) for e in env_ids for o in opponents if o != "self"
    }
    out: list[ExpertTurn] = []
    game = 0
    while len(out) < turns:
        env_id = env_ids[game % len(env_ids)]
        opponent = opponents[(game // len(env_ids)) % len(opponents)]
        env = make(env_id, parse_mode="strict", **env_kwargs.get(env_id, {}))
        env.reset(num_players=2, seed=rng.randrange(2**31))
        seats = (0, 1) if opponent == "self" else (game % 2,)
        done = False
        while not done:
            player, observation = env.get_observation()
            legal = list(env.legal_actions())
            if player in seats:
                move = experts[env_id].act(observation, legal, env)
                why = rationale(env_id, env, player, move) if with_rationale else ""
                turn = ExpertTurn(env_id, game, player, observation, legal, move, why)
                out.append(turn)
                text = turn.response
            else:
                text = others[(env_id, opponent)].act(observation, legal, env)
            done, info = env.step(text)
            if info.get("invalid_move") and player in seats:
                raise UserError(f"{env_id}: the game rejected the expert's move {move!r} as {text!r}")
        game += 1
    return out[:turns]


def examples(
    turns: list[ExpertTurn], prompt_format, tokenizer, constrained: bool, stop_id: int
) -> list[Turn]:
    """The expert turns as fine-tuning examples (Turn records, as the warm-up's finetune takes them)."""
    cands = Candidates(tokenizer)
    # each distinct observation and response is tokenized once and its token list shared by its turns:
    # 10^6 Kuhn turns hold 12 distinct prompts
    distinct = list(dict.fromkeys(t.observation for t in turns))
    prompt_of = dict(zip(distinct, prompt_format.encode(distinct), strict=True))
    response_of: dict[str, list[int]] = {}
    out = []
    for t in turns:
        ids = response_of.get(t.response)
        if ids is None:
            if constrained:
                ids = list(cands.ids(t.move))
            else:
                ids = list(tokenizer(t.response, add_special_tokens=False)["input_ids"]) + [stop_id]
            response_of[t.response] = ids
        out.append(Turn(t.game, t.env_id, t.role, prompt_of[t.observation], ids, [0.0] * len(ids), t.response,
                        t.legal))  # fmt: skip
    return out
