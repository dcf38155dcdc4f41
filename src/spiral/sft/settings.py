"""Settings of `spiral sft`: the sections of `spiral train` (model, rollout for the games and the prompt, eval, run)
plus an `sft` section. Presets live in src/spiral/sft/presets/*.toml; `base` may name another SFT preset or a
`spiral train` preset (whose model, games, prompt and evaluation the SFT run then shares)."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from runkit.errors import UserError
from runkit.settings import opt
from spiral.config import Settings, _coerce, _merge, _read_preset, parse_value, set_value, validate

KIND = "spiral-sft"


@dataclass
class SFTSettings:
    """Supervised fine-tuning on expert turns generated here."""

    expert: str = opt(
        "optimal",
        "the expert's agent spec: optimal = Kuhn Nash, Tic-Tac-Toe minimax (random among optimal moves), the "
        "negotiation heuristic",
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
    micro_batch_size: int = opt(16, "expert turns per optimizer step")


def preset_names() -> list[str]:
    """Names of the built-in SFT presets."""
    files = resources.files("spiral.sft.presets").iterdir()
    return sorted(p.name[:-5] for p in files if p.name.endswith(".toml"))


def _read(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """An SFT preset's table with its `base` chain merged in (a .toml path works too)."""
    if name in seen:
        raise UserError(f"preset {name!r} extends itself ({' -> '.join([*seen, name])})")
    if name.endswith(".toml") or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"preset file {name} does not exist")
        text = path.read_text(encoding="utf-8")
    else:
        res = resources.files("spiral.sft.presets") / f"{name}.toml"
        if not res.is_file():
            raise UserError(
                f"unknown SFT preset {name!r}; known: {', '.join(preset_names())} (or a .toml path)"
            )
        text = res.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"preset {name!r} is not valid TOML: {e}") from None
    base = data.pop("base", None)
    if not base:
        return data
    parent = _read(base, (*seen, name)) if base in preset_names() else _read_preset(base)
    return _merge(parent, data)


def set_sft(sft: SFTSettings, key: str, value: Any) -> None:
    """Set sft.KEY with the declared type."""
    names = {f.name: f for f in dataclasses.fields(sft)}
    if key not in names:
        raise UserError(f"unknown setting sft.{key}; sft has: {', '.join(names)}")
    setattr(sft, key, _coerce(f"sft.{key}", names[key].type, value))


def load(preset: str, overrides: list[str] | None = None) -> tuple[Settings, SFTSettings]:
    """The run's settings and the SFT settings from a preset and `section.key=value` overrides, validated."""
    data = _read(preset)
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
