"""Running under `torchrun`: process-group setup from torchrun's environment, and the few
collective helpers train and trace need. With no WORLD_SIZE (a plain `tokenclock ...`) every
function is a cheap no-op, so single-process code paths stay unchanged.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


_STATE: Dist | None = None


def init(device: str = "cpu") -> Dist:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); idempotent."""
    global _STATE
    if _STATE is not None:
        return _STATE
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _STATE = Dist()
        return _STATE
    import torch
    import torch.distributed as td

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
    if not td.is_initialized():
        td.init_process_group(backend=backend)
    _STATE = Dist(rank=rank, world=world, local_rank=local)
    return _STATE


def launched() -> bool:
    """Whether this process was started by torchrun with 2 or more processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> Dist:
    return _STATE or Dist()


def device_for(device: str, d: Dist) -> str:
    """Each rank takes its own GPU (cuda -> cuda:LOCAL_RANK)."""
    if d.enabled and device == "cuda":
        return f"cuda:{d.local_rank}"
    return device


def barrier() -> None:
    if current().enabled:
        import torch.distributed as td

        td.barrier()


def broadcast_object(obj, src: int = 0):
    """Rank src's Python object on every rank (e.g. an error to raise everywhere)."""
    if not current().enabled:
        return obj
    import torch.distributed as td

    box = [obj]
    td.broadcast_object_list(box, src=src)
    return box[0]


def gather_rows(local, n_total: int, d: Dist):
    """Rank r holds items r, r + world, r + 2*world, ... as rows of `local` (n_local, width);
    return all n_total rows in the original order, on every rank."""
    import torch
    import torch.distributed as td

    if not d.enabled:
        return local
    per = -(-n_total // d.world)
    pad = torch.zeros((per,) + tuple(local.shape[1:]), dtype=local.dtype, device=local.device)
    pad[: local.shape[0]] = local
    parts = [torch.zeros_like(pad) for _ in range(d.world)]
    td.all_gather(parts, pad)
    stacked = torch.stack(parts, dim=1)  # (per, world, ...): item i*world + r <- parts[r][i]
    return stacked.reshape((per * d.world,) + tuple(local.shape[1:]))[:n_total]


def shutdown() -> None:
    global _STATE
    if _STATE is not None and _STATE.enabled:
        import torch.distributed as td

        if td.is_initialized():
            td.destroy_process_group()
    _STATE = None


def run_on_main(fn):
    """Run fn on rank 0 only and hand its result (or its error, raised again) to every rank."""
    d = current()
    if not d.enabled:
        return fn()
    result, error = None, None
    if d.main:
        try:
            result = fn()
        except Exception as e:  # re-raised below on every rank, so no rank waits forever
            error = e
    result, error = broadcast_object((result, error))
    if error is not None:
        raise error
    return result


def mean_over_ranks(t):
    """Elementwise mean of a tensor over ranks (the global-batch losses for logging)."""
    import torch.distributed as td

    t = t.float().clone()
    td.all_reduce(t)
    return t / current().world
