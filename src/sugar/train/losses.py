"""The Sugar losses (method.md section 6): targets from the teachers' alignment, L_d, and variants.

L_d regresses the model's similarity structure M_r[i, j] = cos(r_i, r_j) onto the teacher
structure M_l[i, j] = normalised GAK between the slice sequences of prefixes i and j (Triple
Kernel), with M_l = 1 for prefixes of the same document. No hand-made negatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from sugar.align import gak_matrix, log_local_kernel
from sugar.kernels import LocalKernel

TargetStructure = Literal["gak", "mean"]
SimilarityMap = Literal["identity", "unit"]


@dataclass
class PrefixSlices:
    """The teacher-side view of n sampled prefixes: their slice features, padded."""

    features: Tensor  # (n, L, D) teacher slice vectors (Triple Kernel layout)
    lengths: Tensor  # (n,) slices in each prefix
    modality: Tensor  # (n, L) IMAGE / TEXT ids
    document: Tensor  # (n,) id of the document each prefix was cut from (unique in the global batch)

    def __post_init__(self) -> None:
        n = self.features.shape[0]
        for name in ("lengths", "document"):
            value = getattr(self, name)
            if value.shape != (n,):
                raise ValueError(f"PrefixSlices.{name} must have shape ({n},), got {tuple(value.shape)}")
        if self.modality.shape != self.features.shape[:2]:
            raise ValueError(
                f"PrefixSlices.modality must have shape {tuple(self.features.shape[:2])}, got {tuple(self.modality.shape)}"
            )


def alignment_targets(
    prefixes: PrefixSlices,
    kernel: LocalKernel,
    *,
    delta: float | None = None,
    sigma: float | None = None,
    structure: TargetStructure = "gak",
) -> Tensor:
    """M_l: (n, n) teacher similarity of every pair of prefixes, in [0, 1], 1 within a document.

    `structure="gak"` is the method's dynamic sequence alignment; `"mean"` (the ablation without
    GAK) is the mean local kernel over all slice pairs, ignoring order.
    """
    features = prefixes.features.detach()
    modality = prefixes.modality if kernel.needs_modality else None
    if structure == "gak":
        targets = gak_matrix(
            features, prefixes.lengths, sigma=sigma, delta=delta, kernel=kernel, x_modality=modality
        )
    elif structure == "mean":
        targets = _mean_local_kernel(features, prefixes.lengths, modality, kernel, sigma=sigma, delta=delta)
    else:
        raise ValueError(f"target structure must be 'gak' or 'mean', got {structure!r}")
    same_document = prefixes.document.unsqueeze(0) == prefixes.document.unsqueeze(1)
    return targets.masked_fill(same_document, 1.0)


def _mean_local_kernel(
    features: Tensor,
    lengths: Tensor,
    modality: Tensor | None,
    kernel: LocalKernel,
    *,
    sigma: float | None,
    delta: float | None,
) -> Tensor:
    n, max_len, dim = features.shape
    valid = torch.arange(max_len, device=features.device).unsqueeze(0) < lengths.unsqueeze(1)
    flat = features.reshape(n * max_len, dim)
    flat_modality = None if modality is None else modality.reshape(-1)
    phi = kernel.sqdist(flat, flat, flat_modality, flat_modality).view(n, max_len, n, max_len)
    if sigma is not None:
        scale: Tensor | float = 1.0 / (2.0 * sigma * sigma)
    elif delta is not None:
        total = (lengths.unsqueeze(1) + lengths.unsqueeze(0)).to(features.dtype)
        scale = (1.0 / (delta * delta * total)).view(n, 1, n, 1)
    else:
        raise ValueError("give exactly one of sigma or delta")
    local = log_local_kernel(phi, scale).exp()
    weights = (valid.unsqueeze(2).unsqueeze(3) & valid.unsqueeze(0).unsqueeze(1)).to(features.dtype)
    return (local * weights).sum((1, 3)) / weights.sum((1, 3))


def model_similarities(embeddings: Tensor, mapping: SimilarityMap = "identity") -> Tensor:
    """M_r: cosine similarities of the (already L2-normalised) embeddings, mapped to the target scale.

    "identity" regresses the cosine itself onto targets in [0, 1] (unrelated prefixes become
    orthogonal); "unit" maps (cos + 1) / 2, so unrelated prefixes become opposite.
    """
    cosine = embeddings @ embeddings.T
    if mapping == "identity":
        return cosine
    if mapping == "unit":
        return (cosine + 1.0) / 2.0
    raise ValueError(f"similarity mapping must be 'identity' or 'unit', got {mapping!r}")


def discriminative_loss(embeddings: Tensor, targets: Tensor, mapping: SimilarityMap = "identity") -> Tensor:
    """L_d = (1/n) * sum_ij (M_r[i, j] - M_l[i, j])^2, as in the paper."""
    if targets.shape != (embeddings.shape[0], embeddings.shape[0]):
        raise ValueError(f"targets must be ({embeddings.shape[0]}, {embeddings.shape[0]}), got {tuple(targets.shape)}")
    return similarity_mse(model_similarities(embeddings, mapping), targets)


def similarity_mse(similarities: Tensor, targets: Tensor) -> Tensor:
    """The MSE of L_d on a similarity matrix already mapped to the targets' scale."""
    return (similarities - targets.to(similarities.dtype)).pow(2).sum() / similarities.shape[0]


def soft_infonce_loss(
    embeddings: Tensor, targets: Tensor, temperature: float = 0.05, teacher_temperature: float | None = None
) -> Tensor:
    """InfoNCE with the teacher matrix as soft labels (our variant, method.md section 7): per row,
    KL(softmax(M_l / t_l) || softmax(M_r / t)), averaged over rows; t_l = t unless given.

    By default both sides share the temperature, so, like the MSE, the loss is zero exactly when
    the model's cosines reproduce the targets (up to a constant per row). Normalising the raw targets to sum
    to one instead would spread most of each row's mass over the many unrelated prefixes (each
    around 0.2) and reward collapsed embeddings. A teacher temperature t_l > t keeps more of the
    targets' structure in the soft labels (at t_l = t = 0.05 a row of GAK targets puts ~0.1% of its
    mass on other documents); the loss is then zero at cosines t / t_l times the targets.
    """
    if targets.shape != (embeddings.shape[0], embeddings.shape[0]):
        raise ValueError(f"targets must be ({embeddings.shape[0]}, {embeddings.shape[0]}), got {tuple(targets.shape)}")
    return cosine_infonce(embeddings @ embeddings.T, targets, temperature, teacher_temperature)


def cosine_infonce(
    cosines: Tensor, targets: Tensor, temperature: float = 0.05, teacher_temperature: float | None = None
) -> Tensor:
    """The soft InfoNCE of L_d on a cosine matrix (see soft_infonce_loss)."""
    model_log_p = torch.log_softmax(cosines / temperature, dim=1)
    teacher_log_p = torch.log_softmax(targets.to(cosines.dtype) / (teacher_temperature or temperature), dim=1)
    return (teacher_log_p.exp() * (teacher_log_p - model_log_p)).sum(dim=1).mean()
