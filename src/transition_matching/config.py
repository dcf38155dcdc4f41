"""Typed training settings with a help string per field; presets from configs/tm/*.toml; auto sizes."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runkit.errors import UserError
from runkit.settings import opt, parse_toml, read_preset_text

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "tm"


@dataclass
class TrainConfig:
    """Everything `tm train` needs; 0 or "auto" means: pick from the data and the method."""

    method: str = opt("dtm", "fm, dtm, artm or fhtm")
    data: str = opt(
        "8gaussians", "8gaussians, checkerboard, moons, spirals, digits, mnist or a path to a .npz"
    )
    steps: int = opt(2000, "optimizer steps")
    batch_size: int = opt(256, "global batch size (split over processes and --accum micro-batches)")
    lr: float = opt(1e-3, "AdamW learning rate (constant after warm-up)")
    warmup: int = opt(100, "linear learning-rate warm-up steps")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    ema: float = opt(0.999, "EMA decay of the weights used for sampling")
    grad_clip: float = opt(1.0, "clip the gradient norm to this value (0 = off)")
    seed: int = opt(0, "seed of initialisation, batches and noise")
    T: int = opt(16, "TM steps: trained T of ARTM/FHTM; DTM's grid with --dtm-time discrete")
    schedule: str = opt("uniform", "ARTM/FHTM t/T schedule: uniform or a list such as 0,0.5,0.75,1 (sets T)")
    dtm_time: str = opt("continuous", "DTM training time: continuous (any T at sampling) or discrete (k/T)")
    head_draws: int = opt(1, "(s, Y_0) draws per backbone pass in the head loss")
    time_dist: str = opt("uniform", "t of FM and DTM (continuous): uniform or logit_normal[:M,S]")
    head_time_dist: str = opt("uniform", "the head's s in its loss: uniform or logit_normal[:M,S]")
    p_uncond: float = opt(0.15, "label drop probability for classifier-free guidance (labelled data)")
    backbone: str = opt("auto", "auto, mlp (one-token data) or transformer")
    width: int = opt(0, "backbone width (0 = auto)")
    depth: int = opt(0, "backbone blocks (0 = auto)")
    heads: int = opt(4, "attention heads")
    head_width: int = opt(0, "flow head width (0 = auto)")
    head_depth: int = opt(3, "flow head residual blocks")
    patch: int = opt(0, "patch size for images (0 = auto: digits 2, mnist 4)")
    n_points: int = opt(50_000, "training points drawn for 2D toys")
    scaling: str = opt("standard", "scaling of a user .npz: none, standard or minmax")
    accum: int = opt(1, "micro-batches per step (gradient accumulation)")
    ckpt_every: int = opt(500, "checkpoint every N steps (and at the end)")
    keep_ckpts: int = opt(2, "checkpoints to keep")
    log_every: int = opt(25, "log metrics every N steps")
    sample_steps: int = opt(0, "default sampling steps for eval/plot (0 = method default)")
    sample_head_steps: int = opt(4, "default head ODE steps for eval/plot")
    threads: int = opt(1, "torch CPU threads per process (more only helps on an idle machine)")


def field_help() -> dict[str, str]:
    """Field name -> help string."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(TrainConfig)}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One --flag per TrainConfig field, default None so that presets and defaults show through."""
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = {"int": int, "float": float, "str": str}[
            f.type if isinstance(f.type, str) else f.type.__name__
        ]
        parser.add_argument(flag, type=kind, default=None, help=f"{f.metadata['help']} [{f.default}]")


def load_preset(name: str) -> dict[str, Any]:
    """Settings of a preset: a name under configs/tm/ or a path to a .toml file."""
    path = Path(name)
    if not path.suffix:
        path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
        raise UserError(f"no preset {name!r}; known presets: {', '.join(known) or 'none'}")
    return parse_toml(read_preset_text(path), f"preset {path}")


def make_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """Defaults < preset < overrides (None values are ignored)."""
    values = load_preset(preset) if preset else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(values)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a dict; unknown keys are an error (the usual typo)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names - {"kind", "resolved"})
    if unknown:
        raise UserError(f"unknown settings {', '.join(unknown)}; see `tm train --help`")
    cfg = TrainConfig(**{k: v for k, v in values.items() if k in names})
    check_values(cfg)
    return cfg


# Lower bounds (inclusive) of the numeric settings; 0 means "auto" where the help says so.
_AT_LEAST = {
    "steps": 1, "batch_size": 1, "warmup": 0, "weight_decay": 0.0, "grad_clip": 0.0, "T": 1, "head_draws": 1,
    "width": 0, "depth": 0, "heads": 1, "head_width": 0, "head_depth": 1, "patch": 0, "n_points": 1, "accum": 1,
    "ckpt_every": 1, "keep_ckpts": 1, "log_every": 1, "sample_steps": 0, "sample_head_steps": 1, "threads": 1,
}  # fmt: skip


def check_values(cfg: TrainConfig) -> None:
    """Every setting has its type and a usable value; UserError naming the first that does not."""
    import math

    for f in dataclasses.fields(TrainConfig):
        value, flag = getattr(cfg, f.name), "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        if kind == "str":
            if not isinstance(value, str):
                raise UserError(f"{flag} must be text, got {value!r}")
            continue
        ok_type = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or not math.isfinite(value):
            raise UserError(
                f"{flag} must be a finite {'integer' if kind == 'int' else 'number'}, got {value!r}"
            )
        low = _AT_LEAST.get(f.name)
        if low is not None and value < low:
            raise UserError(f"{flag} must be >= {low}, got {value!r}")
    from transition_matching.processes import parse_time_dist

    parse_time_dist(cfg.time_dist)
    parse_time_dist(cfg.head_time_dist)
    if not cfg.lr > 0:
        raise UserError(f"--lr must be > 0, got {cfg.lr!r}")
    if not 0 <= cfg.ema < 1 or not 0 <= cfg.p_uncond <= 1:
        raise UserError(
            f"--ema must be in [0, 1) and --p-uncond in [0, 1], got {cfg.ema!r} and {cfg.p_uncond!r}"
        )


def resolve(cfg: TrainConfig, n_tokens: int) -> TrainConfig:
    """Fill the auto sizes from the token count and check the settings."""
    from transition_matching.methods import METHODS

    if cfg.method not in METHODS:
        raise UserError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    for name in ("steps", "batch_size", "T", "accum", "head_draws", "log_every", "ckpt_every"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    one_token = n_tokens == 1
    backbone = cfg.backbone
    if backbone == "auto":
        backbone = "mlp" if one_token and cfg.method != "fhtm" else "transformer"
    if backbone not in ("mlp", "transformer"):
        raise UserError(f"unknown backbone {cfg.backbone!r}; choose auto, mlp or transformer")
    if backbone == "mlp" and (not one_token or cfg.method == "fhtm"):
        raise UserError(
            "the MLP backbone takes one-token data and no FHTM history; use --backbone transformer"
        )
    mlp = backbone == "mlp"
    return dataclasses.replace(
        cfg,
        backbone=backbone,
        width=cfg.width or (96 if mlp else 64 if one_token else 96),
        depth=cfg.depth or (3 if mlp else 2 if one_token else 4),
        head_width=cfg.head_width or (96 if one_token else 128),
    )
