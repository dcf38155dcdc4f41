"""Settings of `spiral sft`: the sections of `spiral train` (model, rollout for the games and the prompt, eval, run)
plus an `sft` section. Presets live in src/spiral/sft/presets/*.toml; `base` may name another SFT preset or a
`spiral train` preset (whose model, games, prompt and evaluation the SFT run then shares)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from runkit.errors import UserError
from runkit.settings import opt
from spiral import config
from spiral.config import Settings, _coerce, parse_value, set_value, validate

KIND = "spiral-sft"


@dataclass
class SFTSettings:
    """Supervised fine-tuning on expert turns generated here."""

    expert: str = opt(
        "optimal",
        "the expert's agent spec: optimal = Kuhn Nash, Tic-Tac-Toe and negotiation minimax (random among "
        "optimal moves)",
    )
    opponents: list[str] = opt(
        ["self"],
        "whom the expert plays, games in turn: self (the expert in both seats; both seats' turns are kept) or "
        "an agent spec such as random (only the expert's turns are kept)",
    )
    expert_turns: int = opt(2048, "expert turns to fine-tune on (games are played until there are this many)")
    eval_turns: int = opt(
        256, "held-out expert turns (other deals) for the loss and the move agreement before and after"
    )
    rationale: bool = opt(
        False,
        "free-form moves only: a short templated rationale (the card and the history, the cell's minimax value) "
        "before \\boxed{move}",
    )
    lr: float = opt(1e-4, "fine-tuning learning rate (AdamW, constant)")
    epochs: int = opt(2, "passes over the expert turns")
    micro_batch_size: int = opt(
        16, "expert turns per optimizer step; with batch_size > 0: distinct prompts per forward/backward"
    )
    batch_size: int = opt(
        0,
        "expert turns per optimizer step, identical (prompt, move) pairs computed once and weighted by their "
        "count (0: micro_batch_size turns per step, each computed). Makes SFT on 10^5 Kuhn turns cheap",
    )


PACKAGES = ("spiral.sft.presets", "spiral.presets")  # an SFT preset may extend a `spiral train` preset


def preset_names() -> list[str]:
    """Names of the built-in SFT presets."""
    return config.preset_names(PACKAGES[0])


def set_sft(sft: SFTSettings, key: str, value: Any) -> None:
    """Set sft.KEY with the declared type."""
    names = {f.name: f for f in dataclasses.fields(sft)}
    if key not in names:
        raise UserError(f"unknown setting sft.{key}; sft has: {', '.join(names)}")
    setattr(sft, key, _coerce(f"sft.{key}", names[key].type, value))


def load(preset: str, overrides: list[str] | None = None) -> tuple[Settings, SFTSettings]:
    """The run's settings and the SFT settings from a preset and `section.key=value` overrides, validated."""
    data = config._read_preset(preset, packages=PACKAGES)
    table = data.pop("sft", {})
    s = Settings.from_dict(data)
    s.preset = preset
    sft = SFTSettings()
    for key, value in table.items():
        set_sft(sft, key, value)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: write section.key=value, e.g. --set sft.lr=1e-4")
        key, value = key.strip(), parse_value(raw.strip())
        if key.startswith("sft."):
            set_sft(sft, key[4:], value)
        else:
            set_value(s, key, value)
    validate(s)
    check(s, sft)
    return s, sft


def check(s: Settings, sft: SFTSettings) -> None:
    """Reject impossible SFT settings in one line."""
    for key in ("expert_turns", "epochs", "micro_batch_size"):
        if getattr(sft, key) < 1:
            raise UserError(f"sft.{key} must be >= 1, got {getattr(sft, key)}")
    if sft.batch_size < 0:
        raise UserError(f"sft.batch_size must be >= 0, got {sft.batch_size}")
    if sft.eval_turns < 0:
        raise UserError(f"sft.eval_turns must be >= 0, got {sft.eval_turns}")
    if not sft.lr > 0:
        raise UserError(f"sft.lr must be > 0, got {sft.lr}")
    if not sft.opponents:
        raise UserError('sft.opponents is empty; use ["self"] for expert self-play')
    if sft.rationale and s.rollout.action_mode == "constrained":
        raise UserError(
            "sft.rationale needs free-form moves: constrained decoding plays \\boxed{move} alone "
            "(set rollout.action_mode=free or sft.rationale=false)"
        )
