"""Helpers shared by the TM tests (a uniquely named module: tests/ is not a package)."""

from __future__ import annotations

TINY = {"width": 16, "depth": 1, "heads": 2, "head_width": 16, "head_depth": 1, "n_points": 2000}


def tiny_argv(**extra) -> list[str]:
    """CLI flags for a tiny model, plus extra --key value pairs."""
    out = []
    for k, v in {**TINY, "steps": 20, "batch_size": 32, "log_every": 5, "ckpt_every": 10, **extra}.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


# ----------------------------------------------------------------------------------------- the DTM ablation

SECONDS = {"fm": 0.2, "fm-logit": 0.2, "dtm": 0.21, "dtm-draws4": 0.3, "dtm-logit": 0.21, "dtm-head": 0.22,
           "dtm-all": 0.4, "artm": 0.25, "artm-all": 0.35, "fhtm": 0.25, "fhtm-all": 0.35}  # fmt: skip


def fake_row(v: dict, seed: int, cfid: float, seconds: float, data: str = "digits") -> dict:
    """A measured row of an ablation variant `v` with this cFID and sampling seconds per 1,000."""
    T, S = v["steps"], v["head_steps"]
    return {"data": data, "seed": seed, "model": v["model"], "method": v["method"], "steps": T, "head_steps": S,
            "head_solver": v["head_solver"], "backbone_evals": T, "head_evals": T * S, "train_steps": 100,
            "train_seconds": 10.0, "times": [seconds], "timed_at": "t", "seconds_per_1000": seconds, "cfid": cfid,
            "indep_acc": 0.99, "class_acc": 0.98}  # fmt: skip
