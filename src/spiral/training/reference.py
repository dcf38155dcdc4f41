"""The KL reference of `learner.kl_coef`: the frozen policy in the run's `reference/` folder, and the moving
magnet of `learner.kl_ref_every` (the reference becomes the current policy every N steps; LoRA runs keep the
magnet's adapters in the checkpoint, full fine-tuning replaces the folder)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from spiral.model import is_peft, plain_copy

REFERENCE = "reference"  # run sub-folder holding the KL reference policy (learner.kl_ref = start)


def reference_folder(run_path: Path) -> Path | None:
    """The run's reference folder if it exists (one stranded as reference.old by a stop during a magnet's move is
    put back first), else None."""
    folder, stranded = run_path / REFERENCE, run_path / (REFERENCE + ".old")
    if stranded.is_dir() and not folder.is_dir():
        stranded.replace(folder)
    return folder if folder.is_dir() else None


def save_reference(run_path: Path, model, tokenizer) -> torch.nn.Module:
    """A plain fp32 copy of `model` as the reference, written atomically over any earlier one; returns it."""
    ref = plain_copy(model, torch.float32)
    folder = run_path / REFERENCE
    tmp, old = folder.with_name(folder.name + ".partial"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    ref.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if folder.is_dir():  # a moving magnet replaces the folder: the old one out of the way first
        folder.replace(old)
    tmp.replace(folder)
    shutil.rmtree(old, ignore_errors=True)
    return ref


def adapters_of(model) -> dict[str, torch.Tensor]:
    """Copies of the trainable (LoRA) parameters."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def move_magnet(run_path: Path, model, tokenizer, adapters: dict[str, torch.Tensor] | None = None):
    """The reference becomes the current policy, or (on resume) the policy whose LoRA `adapters` were saved as the
    magnet; returns (reference model, the magnet's adapters or None for a full fine-tune)."""
    current = adapters_of(model) if adapters is not None else None
    if adapters is not None:
        model.load_state_dict(adapters, strict=False)
    if is_peft(model):
        ref, magnet = plain_copy(model, torch.float32), adapters_of(model)
    else:
        ref, magnet = save_reference(run_path, model, tokenizer), None
    if current is not None:
        model.load_state_dict(current, strict=False)
    return ref.eval().requires_grad_(False), magnet
