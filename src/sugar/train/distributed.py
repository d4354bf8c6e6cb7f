"""Gathering across processes so the similarity matrices cover the global batch.

As in open_clip's `gather_features`: every rank sees every rank's embeddings, and the local
shard is put back in place so it keeps its gradient. Ranks may hold different numbers of rows.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def gather_rows(tensor: Tensor, keep_gradient: bool = False) -> Tensor:
    """Concatenate every rank's `tensor` along dim 0, in rank order.

    With `keep_gradient`, this rank's rows are the input tensor itself (gradients flow into the
    local shard only, as each rank backpropagates its own part of the global loss).
    """
    if not is_distributed():
        return tensor
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor.detach()
    gathered = [torch.zeros_like(padded) for _ in counts]
    dist.all_gather(gathered, padded)
    parts = [part[:count] for part, count in zip(gathered, counts)]
    if keep_gradient:
        parts[dist.get_rank()] = tensor
    return torch.cat(parts, dim=0)


def pad_to_length(tensor: Tensor, length: int, dim: int = 1, value: float = 0.0) -> Tensor:
    """Pad `dim` to `length` so ranks with different longest prefixes can be gathered."""
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor, tensor.new_full(shape, value)], dim=dim)


def global_max(value: int, device: torch.device) -> int:
    if not is_distributed():
        return value
    holder = torch.tensor([value], device=device)
    dist.all_reduce(holder, op=dist.ReduceOp.MAX)
    return int(holder.item())


def all_reduce_sum(value: Tensor) -> Tensor:
    """Sum of `value` over processes (a detached copy; for counts and logged values)."""
    if not is_distributed():
        return value.detach().clone()
    total = value.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total
