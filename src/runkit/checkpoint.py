"""Checkpoints that never unpickle: tensors in safetensors, everything else in JSON, files hashed in a manifest.

A checkpoint is a folder written under a temporary name and renamed into place when complete, so an
interrupted save leaves the previous checkpoints as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runkit.errors import CheckpointError
from runkit.io import atomic_write_json

MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
STATE = "state.json"
_TENSOR_REF = "__tensor__"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def flatten_state(obj: Any, prefix: str = "") -> tuple[dict[str, Any], Any]:
    """Split a nested structure into {key: tensor} and a JSON skeleton that refers to those keys."""
    import torch

    tensors: dict[str, torch.Tensor] = {}

    def walk(o: Any, key: str) -> Any:
        if isinstance(o, torch.Tensor):
            tensors[key] = o.detach().cpu().contiguous()
            return {_TENSOR_REF: key}
        if isinstance(o, dict):
            return {
                "__dict__": [
                    [walk(k, f"{key}/k{i}"), walk(v, f"{key}/{i}")] for i, (k, v) in enumerate(o.items())
                ]
            }
        if isinstance(o, (list, tuple)):
            return {
                "__list__" if isinstance(o, list) else "__tuple__": [
                    walk(v, f"{key}/{i}") for i, v in enumerate(o)
                ]
            }
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise TypeError(f"cannot store {type(o).__name__} at {key!r} in a checkpoint")

    return tensors, walk(obj, prefix)


def unflatten_state(skeleton: Any, tensors: dict[str, Any]) -> Any:
    """Inverse of flatten_state."""
    if isinstance(skeleton, dict):
        if _TENSOR_REF in skeleton:
            return tensors[skeleton[_TENSOR_REF]]
        if "__dict__" in skeleton:
            return {unflatten_state(k, tensors): unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
        if "__list__" in skeleton:
            return [unflatten_state(v, tensors) for v in skeleton["__list__"]]
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
    return skeleton


@dataclass
class Checkpoint:
    """A loaded checkpoint: `state` is the JSON-side data with tensors put back in place."""

    path: Path
    state: dict[str, Any]


def save_checkpoint(
    path: str | Path, state: dict[str, Any], write_extra: Callable[[Path], None] | None = None
) -> Path:
    """Write `state` (nested dicts/lists of tensors and JSON values) to folder `path` atomically.

    `write_extra(tmp_dir)` may add files (e.g. a Hugging Face `save_pretrained` model); they are hashed too.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tensors, skeleton = flatten_state(state, "state")
    save_file(tensors, str(tmp / TENSORS))
    (tmp / STATE).write_text(json.dumps(skeleton), encoding="utf-8")
    if write_extra is not None:
        write_extra(tmp)
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest = {
        "format": "runkit-checkpoint-1",
        "files": {str(p.relative_to(tmp)): _sha256(p) for p in files},
    }
    atomic_write_json(tmp / MANIFEST, manifest)
    if path.exists():
        old = path.parent / f".{path.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return path


def verify_checkpoint(path: str | Path) -> dict[str, str]:
    """Check that every file of the manifest is present and unchanged; return the manifest's file table."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"checkpoint {path} has no readable {MANIFEST} ({e}); it is incomplete or not ours"
        ) from None
    for rel, digest in files.items():
        f = path / rel
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is missing {rel}; it is incomplete")
        if _sha256(f) != digest:
            raise CheckpointError(f"checkpoint {path}: {rel} does not match its hash (truncated or modified)")
    return files


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Verify and load a checkpoint written by save_checkpoint; a bad one raises CheckpointError."""
    from safetensors.torch import load_file

    path = Path(path)
    verify_checkpoint(path)
    try:
        tensors = load_file(str(path / TENSORS))
        skeleton = json.loads((path / STATE).read_text(encoding="utf-8"))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"checkpoint {path} cannot be read: {e}") from None
    return Checkpoint(path=path, state=unflatten_state(skeleton, tensors))


def require_state(ckpt: Checkpoint, **parts: type | tuple[type, ...]) -> dict[str, Any]:
    """The checkpoint's state, checked to hold each named part with its type (a step as an int, not text)."""
    state = ckpt.state
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {ckpt.path} holds a {type(state).__name__}, not a state object")
    for name, kind in parts.items():
        if name not in state:
            raise CheckpointError(
                f"checkpoint {ckpt.path} has no {name!r}; it is damaged or from another program"
            )
        value = state[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kind):
            raise CheckpointError(f"checkpoint {ckpt.path}: {name!r} is {value!r:.60}, not of the type saved")
    return state


def load_into(target: Any, saved: Any, path: str | Path, what: str) -> None:
    """`target.load_state_dict(saved)` (a module or an optimizer); a mismatch is a CheckpointError in one line."""
    try:
        target.load_state_dict(saved)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
        detail = " ".join(str(e).split())[:300]
        raise CheckpointError(
            f"checkpoint {path} does not fit this {what} (saved with other settings?): {detail}"
        ) from None


_STEP = re.compile(r"^step_(\d+)$")


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint at `step`."""
    return f"step_{step:06d}"


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `root` as (step, path), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)) and (p / MANIFEST).exists()
    ]
    return sorted(out)


def prune_checkpoints(root: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    for _, p in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)
