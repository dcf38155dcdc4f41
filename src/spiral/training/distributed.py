"""Data-parallel learner ranks: torch DDP under torchrun (gloo on CPU, NCCL on GPUs).

Rank 0 is the whole trainer: it plays (locally, or through Ray rollout workers), evaluates, writes the run
folder and checkpoints. Every other rank holds the same model, KL reference and optimizer and only learns:

    rank 0: collect turns -> RAE -> Leader.update(turns): broadcast (update, turns, step) -> its shard
    rank k: Follower.serve(): receive (update, turns, step)                               -> its shard

Each rank computes the losses of its share of the batch's pieces (distinct prompts for constrained turns,
micro-batches for free-form ones; piece i belongs to rank i mod world size), DDP all-reduces the gradients
(mean over ranks, so each rank's loss is scaled by the world size: the update equals one process's on the whole
batch), and every rank takes the same optimizer step. A rank with fewer pieces than another runs a zero loss
through DDP so that every rank joins the same number of all-reduces. A new KL reference (`set_reference`) is a
message too: followers build it from their own, identical weights.

Checkpoints hold no trace of the rank count: a run resumes at any number of ranks.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch import nn

from runkit.distributed import World
from runkit.distributed import init_world as _init_world
from runkit.errors import UserError


def init_world() -> World:
    """Join the process group when launched by torchrun: messages and metric sums on the CPU (gloo), DDP's GPU
    buckets on NCCL when there are GPUs."""
    return _init_world("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")


def relaunch(topology: str, nproc: int, argv: list[str]) -> int:
    """Run `spiral <argv>` again under torchrun with `nproc` learner ranks on this machine; its exit status."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "spiral.cli", *rank_argv(topology, argv)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.call(cmd, env=env)


def rank_argv(topology: str, argv: list[str]) -> list[str]:
    """The command line of each rank: --nproc / --topology become `--set run.topology=...` (torchrun's parser
    would take a --nproc after the module name for an abbreviation of its own --nproc-per-node)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--nproc", "--topology"):
            skip = True
        elif not a.startswith(("--nproc=", "--topology=")):
            out.append(a)
    out += ["--set", f'run.topology="{topology}"']
    rollout = int(topology.partition(":")[0] or 0)
    if rollout:  # what --topology also sets
        out += ["--set", "run.backend=ray", "--set", f"run.rollout_workers={rollout}"]
    return out


def broadcast(obj=None):
    """Rank 0's `obj` on every rank (pickled through the process group)."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _Closure(nn.Module):
    """The policy as DDP's module; `forward(fn)` runs a loss closure over it (the scorers call the model
    themselves, so the closure is what passes through DDP's forward)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn):
        return fn(self.model)


class DataParallel:
    """The learner's share of a batch and DDP's gradient all-reduce."""

    def __init__(self, model: nn.Module, world: World, device: torch.device) -> None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        self.world = world
        self.comm = torch.device("cpu")  # flags and metric sums go through gloo
        ids = [device.index] if device.type == "cuda" else None
        self.ddp = DDP(_Closure(model), device_ids=ids, forward_sync_buffers=False)
        self.params = [p for p in model.parameters() if p.requires_grad]

    def pieces(self, n: int) -> list[int | None]:
        """This rank's pieces of `n`, padded with None to the count of the busiest rank."""
        mine: list[int | None] = list(range(self.world.rank, n, self.world.size))
        return mine + [None] * (math.ceil(n / self.world.size) - len(mine))

    def context(self, sync: bool):
        """Around a piece's forward and backward: only a `sync` piece all-reduces (the others accumulate)."""
        return nullcontext() if sync else self.ddp.no_sync()

    def forward(self, terms, i: int | None):
        """Piece i's `terms(i)` through DDP's forward; a pad piece (None) is a zero loss."""
        return self.ddp(lambda _model: terms(i) if i is not None else (self.zero_loss(), {}, {}, 0.0))

    def zero_loss(self) -> torch.Tensor:
        """A loss of 0 that reaches every trainable parameter (the pad piece of a rank with fewer pieces)."""
        return torch.stack([p.sum() for p in self.params]).sum() * 0.0

    def all_finite(self, finite: bool) -> bool:
        """Whether every rank's losses were finite."""
        flag = torch.tensor([0.0 if finite else 1.0], device=self.comm)
        dist.all_reduce(flag)
        return bool(flag.item() == 0)

    def reduce(
        self, sums: dict[str, float], keep: tuple[str, ...], maxed: tuple[str, ...]
    ) -> dict[str, float]:
        """Metric sums over the ranks: summed, except `keep` (the same on every rank) and `maxed`."""
        keys = sorted(set().union(*_gather(sorted(sums))))
        summed = [k for k in keys if k not in keep and k not in maxed]
        out = dict(sums)
        if summed:
            t = torch.tensor([sums.get(k, 0.0) for k in summed], dtype=torch.float64, device=self.comm)
            dist.all_reduce(t)
            out.update(zip(summed, t.tolist(), strict=True))
        for k in (k for k in keys if k in maxed):
            t = torch.tensor([sums.get(k, -math.inf)], dtype=torch.float64, device=self.comm)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            out[k] = float(t.item())
        return out


def _gather(obj) -> list:
    box = [None] * dist.get_world_size()
    dist.all_gather_object(box, obj)
    return box


class Leader:
    """Rank 0's learner: tells the followers what to do, then does its own share."""

    def __init__(self, learner) -> None:
        self.learner = learner

    def __getattr__(self, name):
        return getattr(self.learner, name)

    def update(self, turns: list, step: int) -> dict[str, float]:
        broadcast(("update", turns, step))
        return self.learner.update(turns, step)

    def set_reference(self, ref_model, adapters: dict | None = None) -> None:
        """A new KL reference: the current policy, or the policy with the magnet's LoRA `adapters`."""
        broadcast(("reference", adapters))
        self.learner.set_reference(ref_model)

    def sync_weights(self) -> None:
        """Every rank takes rank 0's trainable weights (after a warm-up that only rank 0 ran)."""
        broadcast(("sync",))
        share_weights(self.learner.model)

    def close(self) -> None:
        broadcast(("stop",))


def reference_of(model, adapters: dict | None = None) -> nn.Module:
    """The frozen fp32 copy that rank 0 uses as the KL reference, built from this rank's own weights."""
    from spiral.model import plain_copy

    if adapters is None:
        return plain_copy(model, torch.float32).eval().requires_grad_(False)
    current = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.load_state_dict(adapters, strict=False)
    try:
        return plain_copy(model, torch.float32).eval().requires_grad_(False)
    finally:
        model.load_state_dict(current, strict=False)


def share_weights(model: nn.Module) -> None:
    """Rank 0's trainable parameters to every rank (one broadcast per tensor, through the process group)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                dist.broadcast(p.data, src=0)


def serve(learner, model) -> None:
    """A follower's loop: updates and reference moves until rank 0 stops."""
    while True:
        msg = broadcast()
        if msg[0] == "update":
            learner.update(msg[1], msg[2])
        elif msg[0] == "reference":
            learner.set_reference(reference_of(model, msg[1]))
        elif msg[0] == "sync":
            share_weights(model)
        elif msg[0] == "stop":
            return
        elif msg[0] == "error":
            raise UserError(msg[1])
