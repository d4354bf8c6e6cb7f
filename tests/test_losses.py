"""Sugar losses against hand-computed values on tiny batches."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from sugar.align import gak_matrix
from sugar.kernels import IMAGE, TEXT, SquaredEuclidean, TripleKernel
from sugar.train.losses import (
    PrefixSlices,
    alignment_targets,
    discriminative_loss,
    model_similarities,
    soft_infonce_loss,
)


def local_kernel(phi: float, sigma: float) -> float:
    kappa = math.exp(-phi / (2 * sigma**2))
    return kappa / (2 - kappa)


def test_discriminative_loss_equals_the_hand_computed_value() -> None:
    # three unit embeddings: e0 = e1 (same direction), e2 orthogonal
    embeddings = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([[1.0, 0.5, 0.2], [0.5, 1.0, 0.0], [0.2, 0.0, 1.0]])
    # M_r = [[1,1,0],[1,1,0],[0,0,1]]; squared errors: (1-0.5)^2 twice, (0-0.2)^2 twice
    expected = (2 * 0.25 + 2 * 0.04) / 3
    assert discriminative_loss(embeddings, targets).item() == pytest.approx(expected)
    # unit mapping: M_r = (cos + 1) / 2 = [[1,1,.5],[1,1,.5],[.5,.5,1]]
    expected_unit = (2 * 0.25 + 2 * 0.09 + 2 * 0.25) / 3
    assert discriminative_loss(embeddings, targets, mapping="unit").item() == pytest.approx(expected_unit)


def test_targets_single_slices_are_the_local_kernel_and_one_within_a_document() -> None:
    kernel = SquaredEuclidean()
    features = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 2.0]]], dtype=torch.float64)
    prefixes = PrefixSlices(
        features=features,
        lengths=torch.tensor([1, 1, 1]),
        modality=torch.zeros(3, 1, dtype=torch.long),
        document=torch.tensor([0, 0, 1]),
    )
    targets = alignment_targets(prefixes, kernel, sigma=1.0)
    assert targets[0, 1].item() == 1.0  # same document
    assert targets[0, 2].item() == pytest.approx(local_kernel(4.0, 1.0))
    assert targets[1, 2].item() == pytest.approx(local_kernel(5.0, 1.0))
    torch.testing.assert_close(targets, targets.T)


def test_targets_use_the_triple_kernel_and_delta_bandwidth() -> None:
    kernel = TripleKernel(expert_dim=2)
    generator = torch.Generator().manual_seed(0)
    features = kernel.pack(torch.randn(4, 3, 2, generator=generator), torch.randn(4, 3, 3, generator=generator)).double()
    modality = torch.tensor([[IMAGE, TEXT, TEXT], [IMAGE, TEXT, IMAGE], [TEXT, TEXT, TEXT], [IMAGE, IMAGE, TEXT]])
    lengths = torch.tensor([3, 2, 1, 3])
    prefixes = PrefixSlices(features, lengths, modality, document=torch.arange(4))
    targets = alignment_targets(prefixes, kernel, delta=0.8)
    expected = gak_matrix(features, lengths, delta=0.8, kernel=kernel, x_modality=modality)
    torch.testing.assert_close(targets, expected)


def test_mean_structure_ignores_order_but_gak_does_not() -> None:
    kernel = SquaredEuclidean()
    a, b = [0.0, 0.0], [3.0, 0.0]
    features = torch.tensor([[a, b], [b, a], [a, b]], dtype=torch.float64)
    prefixes = PrefixSlices(features, torch.tensor([2, 2, 2]), torch.zeros(3, 2, dtype=torch.long), torch.arange(3))
    gak = alignment_targets(prefixes, kernel, sigma=1.0, structure="gak")
    mean = alignment_targets(prefixes, kernel, sigma=1.0, structure="mean")
    assert mean[0, 1].item() == pytest.approx(mean[0, 2].item())  # order-blind
    assert gak[0, 1].item() < 0.5 < gak[0, 2].item()  # order matters
    k_far = local_kernel(9.0, 1.0)
    assert mean[0, 1].item() == pytest.approx((1 + 1 + 2 * k_far) / 4)


def _row_kl_case(seed: int, n: int, teacher_t: float, model_t: float) -> tuple[Tensor, Tensor, Tensor]:
    """Random unit embeddings, symmetric targets, and the row KL written out by hand."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.nn.functional.normalize(torch.randn(n, 4, generator=generator), dim=-1)
    targets = torch.rand(n, n, generator=generator)
    targets = (targets + targets.T) / 2
    teacher = torch.softmax(targets / teacher_t, dim=1)
    model = torch.softmax(embeddings @ embeddings.T / model_t, dim=1)
    return embeddings, targets, (teacher * (teacher.log() - model.log())).sum(1).mean()


def test_soft_infonce_is_the_row_kl_between_tempered_softmaxes() -> None:
    embeddings, targets, expected = _row_kl_case(1, 5, 0.1, 0.1)
    assert soft_infonce_loss(embeddings, targets, temperature=0.1).item() == pytest.approx(expected.item(), rel=1e-5)
    # zero exactly at the target structure, whatever the temperature; a shifted row changes nothing
    cosines = embeddings @ embeddings.T
    assert soft_infonce_loss(embeddings, cosines, temperature=0.05).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_infonce_loss(embeddings, cosines + 0.3, temperature=0.05).item() == pytest.approx(0.0, abs=1e-6)
    # a collapsed embedding is penalised against a structured target
    collapsed = torch.nn.functional.normalize(torch.ones(5, 4), dim=-1)
    assert soft_infonce_loss(collapsed, torch.eye(5), temperature=0.1).item() > 1.0


def test_a_warmer_teacher_side_keeps_the_targets_structure() -> None:
    embeddings, targets, expected = _row_kl_case(2, 6, 0.2, 0.05)
    got = soft_infonce_loss(embeddings, targets, temperature=0.05, teacher_temperature=0.2)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    # zero where the cosines are the targets scaled by t / t_l, not at the targets themselves
    cosines = embeddings @ embeddings.T
    assert soft_infonce_loss(embeddings, 4.0 * cosines, 0.05, teacher_temperature=0.2).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_infonce_loss(embeddings, cosines, 0.05, teacher_temperature=0.2).item() > 0.01
    # None is the model's own temperature
    same = soft_infonce_loss(embeddings, targets, 0.05, teacher_temperature=None)
    assert same.item() == pytest.approx(soft_infonce_loss(embeddings, targets, 0.05).item())


def test_loss_gradient_moves_similarities_towards_targets() -> None:
    generator = torch.Generator().manual_seed(2)
    raw = torch.randn(6, 8, generator=generator, requires_grad=True)
    targets = torch.eye(6) * 0.5 + 0.5 * (torch.arange(6).unsqueeze(0) // 2 == torch.arange(6).unsqueeze(1) // 2).float()
    optimizer = torch.optim.SGD([raw], lr=0.5)
    first = None
    for _ in range(50):
        loss = discriminative_loss(torch.nn.functional.normalize(raw, dim=-1), targets)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first


def test_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"targets must be \(3, 3\)"):
        discriminative_loss(torch.zeros(3, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="PrefixSlices.lengths"):
        PrefixSlices(torch.zeros(2, 3, 4), torch.tensor([1]), torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="similarity mapping"):
        model_similarities(torch.zeros(2, 2), mapping="tanh")  # type: ignore[arg-type]
