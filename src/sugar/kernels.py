"""Local kernels: the squared distance phi between two slices, the input of every alignment.

A local kernel only says how far two slices are; `sugar.align` turns distances into the local
log-kernel and runs the alignment. Keeping the two apart lets a caller switch kernels (plain
Euclidean, the Triple Kernel) without touching the dynamic programme.

Shapes: `a` is (..., Na, D), `b` is (..., Nb, D) with broadcastable leading dims; the result is
(..., Na, Nb). Modality ids, where a kernel uses them, are integer tensors shaped like the slice
dims, (..., Na) and (..., Nb).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

IMAGE = 0
TEXT = 1
MODALITY_IDS = {"image": IMAGE, "text": TEXT}


class LocalKernel(Protocol):
    """A squared distance between slices; `needs_modality` says whether modality ids are used."""

    needs_modality: bool

    def sqdist(
        self, a: Tensor, b: Tensor, a_modality: Tensor | None = None, b_modality: Tensor | None = None
    ) -> Tensor: ...


def _pairwise_sqeuclidean(a: Tensor, b: Tensor) -> Tensor:
    """||a_i - b_j||^2 through one matrix product (the GEMM is the whole cost), clamped at 0."""
    a_sq = a.pow(2).sum(-1, keepdim=True)
    b_sq = b.pow(2).sum(-1).unsqueeze(-2)
    if a.dim() == 2 and b.dim() == 2:  # the hot path: one fused GEMM, then in-place updates
        return torch.addmm(b_sq, a, b.T, alpha=-2.0).add_(a_sq).clamp_min_(0.0)
    return (a_sq + b_sq - 2.0 * (a @ b.transpose(-1, -2))).clamp_min_(0.0)


@dataclass(frozen=True)
class SquaredEuclidean:
    """phi(a, b) = ||a - b||^2, tslearn's local distance for `gak` / `cdist_gak`."""

    needs_modality: bool = False

    def sqdist(
        self, a: Tensor, b: Tensor, a_modality: Tensor | None = None, b_modality: Tensor | None = None
    ) -> Tensor:
        return _pairwise_sqeuclidean(a, b)


@dataclass(frozen=True)
class TripleKernel:
    """The Triple Kernel of method.md section 4.

    Each slice vector is ``[expert part (expert_dim) | cross-modal part (rest)]``, each part
    L2-normalised (see `pack`). Same-modality pairs compare the expert parts (image expert for
    image-image, text expert for text-text); image-text pairs compare the cross-modal parts.
    Experts of different widths share the expert block by zero-padding, which leaves norms and
    same-modality distances unchanged; expert parts of different modalities are never compared.
    phi lies in [0, 4].
    """

    expert_dim: int
    needs_modality: bool = True

    def __post_init__(self) -> None:
        if self.expert_dim < 1:
            raise ValueError(f"TripleKernel.expert_dim must be >= 1, got {self.expert_dim}")

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[-1] <= self.expert_dim:
            raise ValueError(
                f"TripleKernel(expert_dim={self.expert_dim}) expects slice vectors wider than "
                f"{self.expert_dim} (expert part then cross-modal part), got width {x.shape[-1]}"
            )
        return x[..., : self.expert_dim], x[..., self.expert_dim :]

    def pack(self, expert: Tensor, cross: Tensor) -> Tensor:
        """Normalise both parts and lay them out as one slice vector this kernel reads."""
        if expert.shape[-1] > self.expert_dim:
            raise ValueError(
                f"expert part has width {expert.shape[-1]}, more than expert_dim={self.expert_dim}"
            )
        expert = torch.nn.functional.normalize(expert, dim=-1)
        cross = torch.nn.functional.normalize(cross, dim=-1)
        pad = self.expert_dim - expert.shape[-1]
        if pad:
            expert = torch.nn.functional.pad(expert, (0, pad))
        return torch.cat([expert, cross], dim=-1)

    def sqdist(
        self, a: Tensor, b: Tensor, a_modality: Tensor | None = None, b_modality: Tensor | None = None
    ) -> Tensor:
        if a_modality is None or b_modality is None:
            raise ValueError("TripleKernel needs per-slice modality ids (0 = image, 1 = text)")
        a_expert, a_cross = self.split(a)
        b_expert, b_cross = self.split(b)
        # Parts are unit vectors, so ||u - v||^2 = 2 - 2 u.v: two GEMMs, no norms recomputed.
        same = 2.0 - 2.0 * (a_expert @ b_expert.transpose(-1, -2))
        cross = 2.0 - 2.0 * (a_cross @ b_cross.transpose(-1, -2))
        same_modality = a_modality.unsqueeze(-1) == b_modality.unsqueeze(-2)
        return torch.where(same_modality, same, cross).clamp_(0.0, 4.0)


def sqdist_into(
    kernel: LocalKernel,
    out: Tensor,
    a: Tensor,
    b: Tensor,
    a_modality: Tensor | None = None,
    b_modality: Tensor | None = None,
    a_sq: Tensor | None = None,
    b_sq: Tensor | None = None,
) -> None:
    """Write `kernel.sqdist(a, b)` into the 2-D view `out` (rows of a larger matrix).

    For the plain Euclidean kernel the matrix product writes straight into `out` (no temporary,
    no copy), from squared norms a caller filling many tiles can compute once (`a_sq`, `b_sq`)."""
    if isinstance(kernel, SquaredEuclidean) and a.dim() == 2 and b.dim() == 2:
        a_sq = a.pow(2).sum(-1) if a_sq is None else a_sq
        b_sq = b.pow(2).sum(-1) if b_sq is None else b_sq
        torch.addmm(b_sq.unsqueeze(0), a, b.T, alpha=-2.0, out=out)
        out.add_(a_sq.unsqueeze(1)).clamp_min_(0.0)
    else:
        out.copy_(kernel.sqdist(a, b, a_modality, b_modality))
