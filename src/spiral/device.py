"""Where the policy, the KL reference, the learner and the transformers sampler run: `model.device`.

  auto      CUDA when torch sees a GPU (under torchrun: the rank's own `cuda:LOCAL_RANK`), else the CPU
  cpu       the CPU (the project's tested default on machines without a GPU)
  cuda      the first GPU (under torchrun: `cuda:LOCAL_RANK`)
  cuda:N    GPU N

Samplers draw on the CPU from their own torch RNG whatever the device (the logits of the drawn positions are
copied over), so a run's draws and its checkpoints' RNG states do not depend on where the model sits.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from typing import TYPE_CHECKING

from runkit.errors import UserError

if TYPE_CHECKING:
    import torch


def resolve_device(spec: str) -> torch.device:
    """The torch device a `model.device` setting names; a GPU that is not there is one line."""
    import torch

    spec = (spec or "auto").strip().lower()
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if spec == "auto":
        return (
            torch.device("cuda", local % torch.cuda.device_count())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(
                f"model.device={spec} but torch sees no CUDA GPU here; use model.device=cpu (or auto)"
            )
        index = local if spec == "cuda" else _index(spec)
        if index >= torch.cuda.device_count():
            raise UserError(f"model.device={spec}: this machine has {torch.cuda.device_count()} GPU(s)")
        return torch.device("cuda", index)
    raise UserError(f"model.device must be auto, cpu, cuda or cuda:N, got {spec!r}")


def _index(spec: str) -> int:
    tail = spec.partition(":")[2]
    if not tail.isdigit():
        raise UserError(f"model.device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    return int(tail)


def check_device(spec: str) -> None:
    """Validate a `model.device` setting without touching a GPU (the names only)."""
    s = (spec or "").strip().lower()
    if s in ("auto", "cpu", "cuda") or (s.startswith("cuda:") and s[5:].isdigit()):
        return
    raise UserError(f"model.device must be auto, cpu, cuda or cuda:N, got {spec!r}")


def device_of(model) -> torch.device:
    """The device of a module's first parameter (the CPU for a module without parameters)."""
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def autocast_for(dtype: str, device: torch.device | str = "cpu"):
    """bf16 autocast on `device` for dtype 'bf16', else nothing (fp32 master weights either way)."""
    import torch

    kind = torch.device(device).type
    return torch.autocast(kind, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def parse_topology(text: str) -> tuple[int, int]:
    """`run.topology` ROLLOUT:LEARNER as (Ray rollout workers, learner ranks); empty is (0, 1)."""
    if not text.strip():
        return 0, 1
    a, sep, b = text.strip().partition(":")
    if (
        not sep
        or not a.strip().isdigit()
        or not b.strip().isdigit()
        or int(b) < 1
        or int(b) > 4096
        or int(a) > 4096
    ):
        raise UserError(
            f"run.topology must be ROLLOUT:LEARNER with LEARNER >= 1, e.g. 4:4 or 0:2; got {text!r}"
        )
    return int(a), int(b)
