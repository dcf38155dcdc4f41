"""This process's place among the processes of a torchrun launch (SPIRAL's learner ranks, TM's DDP)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class World:
    """This process's rank among `size` processes (rank 0, size 1 without torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_world(backend: str = "gloo") -> World:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1) with `backend`; else one process."""
    import torch.distributed as dist

    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size())
