"""The run folder shared by both packages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from runkit.checkpoint import list_checkpoints
from runkit.errors import UserError
from runkit.io import atomic_write_json, atomic_write_text, read_json


@dataclass(frozen=True)
class RunDir:
    """config.json, metrics.jsonl, tensorboard/, checkpoints/, plots/, report.html under one folder."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        """The newest complete checkpoint, or None."""
        found = list_checkpoints(self.checkpoints)
        return found[-1] if found else None

    def read_config(self) -> dict[str, Any]:
        """The resolved config of this run."""
        if not self.config.exists():
            raise UserError(f"{self.path} is not a run folder (no config.json)")
        try:
            cfg = read_json(self.config)
        except (OSError, ValueError) as e:  # ValueError: not UTF-8 or not JSON
            raise UserError(
                f"{self.config} cannot be read as JSON ({type(e).__name__}); restore or delete it"
            ) from None
        if not isinstance(cfg, dict):
            raise UserError(
                f"{self.config} holds a JSON {type(cfg).__name__}, not the settings object of a run"
            )
        return cfg


def is_run_of(path: str | Path, kind: str) -> bool:
    """Whether `path` holds a run folder of `kind`: a config.json object with that kind."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and cfg.get("kind") == kind


def refuse_links(path: str | Path) -> None:
    """A one-line UserError if the folder holds a symbolic link anywhere below it: a run folder from elsewhere
    could point its logs, plots or checkpoints at files outside it, and resuming would write there."""
    import os

    root = Path(path)
    if root.is_symlink():
        return  # the folder itself may be reached through a link the user made; its contents may not
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in (*dirs, *files):
            p = Path(folder) / name
            if p.is_symlink():
                raise UserError(
                    f"{root} holds a symbolic link ({p.relative_to(root)} -> {os.readlink(p)}); runs never write "
                    "through links out of their folder: remove it, or copy the run without links"
                )


OUTPUT_MARK = ".written-by-spiral-tm"  # in every output folder this project creates


def written_here(path: str | Path) -> bool:
    """Whether this project wrote the folder: its mark, or a config / summary / league JSON that names a kind
    (folders written before the mark existed)."""
    path = Path(path)
    if (path / OUTPUT_MARK).is_file():
        return True
    for name in ("config.json", "summary.json", "league.json"):
        try:
            doc = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and (isinstance(doc.get("kind"), str) or name == "league.json"):
            return True
    return False


def claim_output(path: str | Path) -> Path:
    """The output folder of a command: created (and marked) when new; refused with one line when it is a file,
    holds a link, or is not empty and was not written by this project (its files would be overwritten)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file, not a folder; choose another --out")
    if path.is_dir():
        refuse_links(path)
        names = sorted(p.name for p in islice(path.iterdir(), 50))
        if names and not written_here(path):
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise UserError(
                f"{path} is not empty and was not written by this project (it holds {shown}); choose another --out"
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not (path / OUTPUT_MARK).exists():
            atomic_write_text(path / OUTPUT_MARK, "written by spiral / tm; outputs here may be replaced\n")
    except OSError as e:
        raise UserError(f"cannot write to {path}: {e.strerror or e}; choose another --out") from None
    return path


def create_run_dir(path: str | Path, config: dict[str, Any], kind: str, force: bool = False) -> RunDir:
    """Make a new run folder and write its resolved config.

    Refuses a run that has checkpoints (resume it instead), a file, a folder holding a link, and a non-empty
    folder that is not a run of `kind` (its config.json, metrics.jsonl, report.html would be overwritten);
    `force` lets a run replace only what this project wrote (another run, an output folder), never a folder of
    the user's.
    """
    run = RunDir(Path(path))
    if run.path.exists() and not run.path.is_dir():
        raise UserError(f"{run.path} is a file, not a folder; choose another --out")
    if run.latest_checkpoint() is not None:
        raise UserError(
            f"{run.path} already holds a run; pass --resume {run.path} to continue it or choose another --out"
        )
    if run.path.is_dir():
        refuse_links(run.path)
    if run.path.is_dir() and not is_run_of(run.path, kind):
        names = sorted(p.name for p in islice(run.path.iterdir(), 50))
        ours = written_here(run.path)
        if names and not (force and ours):
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            hint = "pass --force to write the run into it" if ours else "this project did not write it"
            raise UserError(
                f"{run.path} is not empty and not a {kind} run (it holds {shown}); choose another --out ({hint})"
            )
    try:
        for d in (run.path, run.checkpoints, run.plots):
            d.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run.config, {"kind": kind, **config})
    except OSError as e:
        raise UserError(
            f"cannot create the run folder {run.path}: {e.strerror or e}; choose another --out"
        ) from None
    return run


def open_run_dir(path: str | Path, kind: str) -> RunDir:
    """Open an existing run folder of the given kind (e.g. 'spiral', 'tm')."""
    run = RunDir(Path(path))
    cfg = run.read_config()
    refuse_links(run.path)
    if cfg.get("kind") != kind:
        raise UserError(f"{run.path} is a {cfg.get('kind')!r} run, not a {kind!r} run")
    return run
