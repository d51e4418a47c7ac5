"""The search across processes: under torch.distributed (torchrun; gloo on CPU, nccl on GPU) every rank runs the
same search loop, rank 0's candidates are the ones scored, and each rank scores every world-th of them.

A score depends only on (plan, noise, model), so the gathered scores, and the plan returned, equal one process's on
the same machine and thread count. Outside a process group every function here is the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch.distributed as dist

T = TypeVar("T")
R = TypeVar("R")


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (the rank that writes files and shows progress) and outside a process group."""
    return world()[0] == 0


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every rank (torch.distributed.broadcast_object_list)."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def spread(fn: Callable[[T], R], items: Sequence[T]) -> tuple[list[T], list[R]]:
    """(rank 0's items, [fn(item)] in their order), fn applied round-robin: rank r does items r, r + world, ...
    Results come back through all_gather_object, so anything picklable (floats, CPU tensors) travels."""
    rank, size = world()
    if size == 1:
        return list(items), [fn(x) for x in items]
    items = broadcast(list(items))
    mine = [fn(x) for x in items[rank::size]]
    parts: list[Any] = [None] * size
    dist.all_gather_object(parts, mine)
    out: list[Any] = [None] * len(items)
    for r, part in enumerate(parts):
        out[r::size] = part
    return items, out


def leader(fn: Callable[[], T]) -> T:
    """fn() on rank 0, its result (or its exception) on every rank: for reading a state file once."""
    if world()[1] == 1:
        return fn()
    res: tuple[bool, Any] = (True, None)
    if is_main():
        try:
            res = (True, fn())
        except Exception as e:  # re-raised on every rank, so no rank waits in a collective that never comes
            res = (False, e)
    ok, val = broadcast(res)
    if not ok:
        raise val
    return val
