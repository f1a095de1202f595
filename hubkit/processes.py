"""The processes of a ``torchrun`` / ``accelerate launch`` run, for the stages that split rows among them.

Several processes join a gloo group (it carries row indices, results and errors, never weights); each
does its share of the rows and rank 0 alone writes the result, the single-process result row for row.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hubkit.errors import HubkitError

T = TypeVar("T")


def rank_world() -> tuple[int, int]:
    """(rank, number of processes) of this run; (0, 1) outside a launcher."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    return rank_world()[0] == 0


def local_device(device: str | None) -> str | None:
    """``cuda`` means this process's own GPU (``LOCAL_RANK``) when several processes share a node."""
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def barrier() -> None:
    if rank_world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank (``[obj]`` in one process)."""
    rank, world = rank_world()
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and give its result (or its `HubkitError`) to every rank."""
    rank, world = rank_world()
    if world == 1:
        return fn()
    import torch.distributed as dist

    box: list[Any] = [None]
    failure: Exception | None = None
    if rank == 0:
        try:
            box[0] = ("ok", fn())
        except Exception as exc:  # every rank must hear of it, or the others wait forever
            failure = exc
            box[0] = ("error", exc if isinstance(exc, HubkitError) else HubkitError(f"rank 0 failed: {exc}"))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if failure is not None:
        raise failure
    if kind == "error":
        raise value
    return value


def my_share(items: list[T]) -> list[T]:
    """This rank's items: every `world`-th one from its rank (a fixed split, whatever finishes first)."""
    rank, world = rank_world()
    return items[rank::world]
