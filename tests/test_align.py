"""The alignment core against brute force, tslearn, autograd and its own invariants."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from sugar.align import DEFAULT_CHUNK_BYTES, gak, gak_matrix, log_local_kernel, soft_alignment
from sugar.kernels import IMAGE, TEXT, SquaredEuclidean, TripleKernel, sqdist_into


def all_paths(n: int, m: int) -> list[list[tuple[int, int]]]:
    """Every monotone alignment path from (0, 0) to (n - 1, m - 1)."""
    if (n, m) == (1, 1):
        return [[(0, 0)]]
    paths = []
    for di, dj in ((1, 0), (0, 1), (1, 1)):
        if n - di >= 1 and m - dj >= 1:
            paths += [p + [(n - 1, m - 1)] for p in all_paths(n - di, m - dj)]
    return paths


def brute_force_gak(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    phi = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    kappa = np.exp(-phi / (2 * sigma**2))
    k = kappa / (2 - kappa)
    return float(sum(np.prod([k[i, j] for i, j in path]) for path in all_paths(len(x), len(y))))


def brute_force_alignment(x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    phi = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    kappa = np.exp(-phi / (2 * sigma**2))
    k = kappa / (2 - kappa)
    expected = np.zeros_like(k)
    total = 0.0
    for path in all_paths(len(x), len(y)):
        weight = np.prod([k[i, j] for i, j in path])
        total += weight
        for i, j in path:
            expected[i, j] += weight
    return expected / total


def padded(sequences: list[torch.Tensor], fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    max_len = max(len(s) for s in sequences)
    out = torch.full((len(sequences), max_len, sequences[0].shape[1]), fill, dtype=sequences[0].dtype)
    for b, s in enumerate(sequences):
        out[b, : len(s)] = s
    return out, torch.tensor([len(s) for s in sequences])


def random_set(generator: torch.Generator, count: int, max_len: int, dim: int, scale: float = 0.5):
    lengths = torch.randint(1, max_len + 1, (count,), generator=generator).tolist()
    return [torch.randn(n, dim, generator=generator, dtype=torch.float64) * scale for n in lengths]


def test_all_paths_counts_are_delannoy_numbers() -> None:
    assert [len(all_paths(n, n)) for n in range(1, 6)] == [1, 3, 13, 63, 321]


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5])
def test_matches_brute_force_over_every_path(sigma: float) -> None:
    generator = torch.Generator().manual_seed(1)
    for n, m in itertools.product(range(1, 6), repeat=2):
        x = torch.randn(n, 3, generator=generator, dtype=torch.float64) * 0.6
        y = torch.randn(m, 3, generator=generator, dtype=torch.float64) * 0.6
        expected = brute_force_gak(x.numpy(), y.numpy(), sigma)
        got = gak(x, y, sigma=sigma, normalize=False).item()
        assert got == pytest.approx(expected, rel=1e-10, abs=0)
        normalized = expected / math.sqrt(
            brute_force_gak(x.numpy(), x.numpy(), sigma) * brute_force_gak(y.numpy(), y.numpy(), sigma)
        )
        assert gak(x, y, sigma=sigma).item() == pytest.approx(normalized, rel=1e-10, abs=0)


def test_delta_bandwidth_depends_on_both_lengths() -> None:
    generator = torch.Generator().manual_seed(2)
    delta = 0.4
    sequences = random_set(generator, 6, 5, 4)
    x, lengths = padded(sequences)
    raw = gak_matrix(x, lengths, delta=delta, normalize=False)
    normalized = gak_matrix(x, lengths, delta=delta)
    for a, b in itertools.product(range(6), repeat=2):
        sa, sb = sequences[a].numpy(), sequences[b].numpy()
        sigma_ab = delta * math.sqrt((len(sa) + len(sb)) / 2)
        expected = brute_force_gak(sa, sb, sigma_ab)
        assert raw[a, b].item() == pytest.approx(expected, rel=1e-10, abs=0)
        self_a = brute_force_gak(sa, sa, delta * math.sqrt(len(sa)))
        self_b = brute_force_gak(sb, sb, delta * math.sqrt(len(sb)))
        assert normalized[a, b].item() == pytest.approx(min(1.0, expected / math.sqrt(self_a * self_b)), rel=1e-10)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 4.0])
def test_matches_tslearn_cdist_gak(sigma: float) -> None:
    from tslearn.metrics import cdist_gak
    from tslearn.utils import to_time_series_dataset

    generator = torch.Generator().manual_seed(3)
    first = random_set(generator, 40, 9, 5)
    second = random_set(generator, 23, 6, 5)
    x, x_lengths = padded(first)
    y, y_lengths = padded(second)
    dataset_x = to_time_series_dataset([s.numpy() for s in first])
    dataset_y = to_time_series_dataset([s.numpy() for s in second])

    expected_self = cdist_gak(dataset_x, sigma=sigma)
    np.testing.assert_allclose(gak_matrix(x, x_lengths, sigma=sigma).numpy(), expected_self, rtol=1e-6, atol=0)
    expected_cross = cdist_gak(dataset_x, dataset_y, sigma=sigma)
    got_cross = gak_matrix(x, x_lengths, y, y_lengths, sigma=sigma).numpy()
    np.testing.assert_allclose(got_cross, expected_cross, rtol=1e-6, atol=0)


def test_padding_never_changes_a_pair() -> None:
    generator = torch.Generator().manual_seed(4)
    sequences = random_set(generator, 9, 7, 3)
    for fill in (0.0, 1e6, float("nan")):
        x, lengths = padded(sequences, fill=fill)
        for log in (False, True):
            matrix = gak_matrix(x, lengths, sigma=0.8, log=log)
            assert torch.isfinite(matrix).all()
            for a, b in itertools.product(range(9), repeat=2):
                alone = gak(sequences[a], sequences[b], sigma=0.8, log=log)
                assert matrix[a, b].item() == pytest.approx(alone.item(), rel=1e-12, abs=1e-12 if log else 1e-300)


def test_extra_padding_columns_and_blocks_do_not_change_results() -> None:
    generator = torch.Generator().manual_seed(5)
    x, lengths = padded(random_set(generator, 30, 6, 4))
    wider = torch.cat([x, torch.randn(30, 5, 4, dtype=torch.float64)], dim=1)
    reference = gak_matrix(x, lengths, sigma=1.0)
    torch.testing.assert_close(gak_matrix(wider, lengths, sigma=1.0), reference, rtol=1e-12, atol=0)
    # tiny chunks force many blocks (and mirrored blocks in the symmetric case)
    torch.testing.assert_close(gak_matrix(x, lengths, sigma=1.0, chunk_bytes=4096), reference, rtol=1e-12, atol=0)
    asymmetric = gak_matrix(x, lengths, x.clone(), lengths, sigma=1.0, chunk_bytes=4096)
    torch.testing.assert_close(asymmetric, reference, rtol=1e-12, atol=0)


def test_normalized_values_are_in_unit_interval_with_ones_on_the_diagonal() -> None:
    generator = torch.Generator().manual_seed(6)
    x, lengths = padded(random_set(generator, 25, 8, 6, scale=1.0))
    matrix = gak_matrix(x, lengths, delta=0.7)
    assert (matrix >= 0).all() and (matrix <= 1).all()
    torch.testing.assert_close(matrix.diagonal(), torch.ones(25, dtype=torch.float64))
    torch.testing.assert_close(matrix, matrix.T)
    log_matrix = gak_matrix(x, lengths, delta=0.7, log=True)
    torch.testing.assert_close(log_matrix.exp(), matrix)


def check_finite_and_in_range(max_len: int, dtype: torch.dtype, sigma: float) -> None:
    generator = torch.Generator().manual_seed(7)
    x = torch.nn.functional.normalize(torch.randn(3, max_len, 64, generator=generator), dim=-1).to(dtype)
    lengths = torch.tensor([max_len, max_len * 3 // 4, 17])
    for normalize in (True, False):
        log_matrix = gak_matrix(x, lengths, sigma=sigma, normalize=normalize, log=True)
        assert torch.isfinite(log_matrix).all(), (sigma, normalize)
    matrix = gak_matrix(x, lengths, sigma=sigma)
    assert torch.isfinite(matrix).all() and (matrix >= 0).all() and (matrix <= 1).all()
    assert torch.allclose(matrix.diagonal(), torch.ones(3, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sigma", [1e-3, 1e-1, 1.0, 1e3])
def test_extreme_bandwidths_stay_finite(dtype: torch.dtype, sigma: float) -> None:
    check_finite_and_in_range(40, dtype, sigma)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sigma", [1e-3, 1e-1, 1.0, 1e3])
def test_extreme_bandwidths_at_length_256_stay_finite(dtype: torch.dtype, sigma: float) -> None:
    check_finite_and_in_range(256, dtype, sigma)


@pytest.mark.slow
def test_wide_slices_stay_finite() -> None:
    generator = torch.Generator().manual_seed(8)
    x = torch.randn(2, 256, 4096, generator=generator)
    for delta in (1e-3, 1.0, 1e3):
        assert torch.isfinite(gak_matrix(x, torch.tensor([256, 100]), delta=delta, log=True)).all()


def test_gradcheck_in_float64() -> None:
    generator = torch.Generator().manual_seed(9)
    x = torch.randn(3, 4, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    x_lengths, y_lengths = torch.tensor([4, 2, 3]), torch.tensor([3, 1])
    assert torch.autograd.gradcheck(
        lambda a, b: gak_matrix(a, x_lengths, b, y_lengths, sigma=0.9, log=True), (x, y)
    )
    assert torch.autograd.gradcheck(lambda a: gak_matrix(a, x_lengths, delta=0.6), (x,))
    assert torch.autograd.gradcheck(
        lambda a, b: gak_matrix(a, x_lengths, b, y_lengths, sigma=0.9, normalize=False, log=True), (x, y)
    )


def test_gradcheck_triple_kernel() -> None:
    generator = torch.Generator().manual_seed(10)
    kernel = TripleKernel(expert_dim=3)
    x = torch.randn(3, 3, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    modality = torch.tensor([[IMAGE, TEXT, TEXT], [TEXT, IMAGE, IMAGE], [IMAGE, IMAGE, TEXT]])
    lengths = torch.tensor([3, 2, 3])

    def value(raw: torch.Tensor) -> torch.Tensor:
        packed = kernel.pack(raw[..., :3], raw[..., 3:])
        return gak_matrix(packed, lengths, delta=0.5, kernel=kernel, x_modality=modality)

    assert torch.autograd.gradcheck(value, (x,))


def test_soft_alignment_is_the_expected_path_occupancy() -> None:
    generator = torch.Generator().manual_seed(11)
    for n, m in [(1, 1), (2, 3), (4, 4), (5, 3)]:
        x = torch.randn(n, 3, generator=generator, dtype=torch.float64)
        y = torch.randn(m, 3, generator=generator, dtype=torch.float64)
        expected = brute_force_alignment(x.numpy(), y.numpy(), 0.8)
        got = soft_alignment(x, y, sigma=0.8)
        assert got.shape == (n, m)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-14)
        assert got[0, 0] == pytest.approx(1.0) and got[-1, -1] == pytest.approx(1.0)


def test_soft_alignment_follows_the_obvious_matching() -> None:
    # y repeats every slice of x twice: each x_i should align with its own two copies.
    x = torch.eye(4, dtype=torch.float64) * 3
    y = x.repeat_interleave(2, dim=0)
    alignment = soft_alignment(x, y, sigma=0.5)
    assert torch.equal(alignment.argmax(0), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))


def test_triple_kernel_picks_the_part_by_modality() -> None:
    kernel = TripleKernel(expert_dim=2)
    # expert parts: a=(1,0), b=(0,1) -> distance 2; cross parts identical -> distance 0
    a = kernel.pack(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
    b = kernel.pack(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
    # c: same expert as a, opposite cross part -> expert distance 0, cross distance 4
    c = kernel.pack(torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0, 0.0]]))
    image, text = torch.tensor([IMAGE]), torch.tensor([TEXT])
    assert kernel.sqdist(a, b, image, image).item() == pytest.approx(2.0)  # image-image: expert
    assert kernel.sqdist(a, b, text, text).item() == pytest.approx(2.0)  # text-text: expert
    assert kernel.sqdist(a, b, image, text).item() == pytest.approx(0.0)  # image-text: cross
    assert kernel.sqdist(a, b, text, image).item() == pytest.approx(0.0)  # text-image: cross
    assert kernel.sqdist(a, c, image, image).item() == pytest.approx(0.0)
    assert kernel.sqdist(a, c, text, image).item() == pytest.approx(4.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sqdist_into_writes_the_kernel_into_a_strided_view(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(3)
    a, b = torch.randn(7, 5, generator=generator, dtype=dtype), torch.randn(9, 5, generator=generator, dtype=dtype)
    triple = TripleKernel(expert_dim=2)
    modality_a, modality_b = torch.tensor([IMAGE, TEXT] * 3 + [IMAGE]), torch.tensor([TEXT, IMAGE] * 4 + [TEXT])
    for kernel in (SquaredEuclidean(), triple):
        whole = torch.full((10, 12), -1.0, dtype=dtype)
        sqdist_into(kernel, whole[2:9, 3:], a, b, modality_a, modality_b)
        expected = kernel.sqdist(a, b, modality_a, modality_b)
        torch.testing.assert_close(whole[2:9, 3:], expected)
        assert (whole[:2] == -1).all() and (whole[9:] == -1).all() and (whole[:, :3] == -1).all()


def test_triple_kernel_experts_of_different_widths_share_the_expert_block() -> None:
    kernel = TripleKernel(expert_dim=6)
    generator = torch.Generator().manual_seed(12)
    image_expert, text_expert = torch.randn(2, 6, generator=generator), torch.randn(2, 4, generator=generator)
    cross = torch.randn(4, 5, generator=generator)
    slices = torch.cat([kernel.pack(image_expert, cross[:2]), kernel.pack(text_expert, cross[2:])])
    modality = torch.tensor([IMAGE, IMAGE, TEXT, TEXT])
    phi = kernel.sqdist(slices, slices, modality, modality)
    unit = torch.nn.functional.normalize
    assert phi[0, 1].item() == pytest.approx(((unit(image_expert[0], dim=0) - unit(image_expert[1], dim=0)) ** 2).sum().item(), rel=1e-5)
    assert phi[2, 3].item() == pytest.approx(((unit(text_expert[0], dim=0) - unit(text_expert[1], dim=0)) ** 2).sum().item(), rel=1e-5)
    assert phi[0, 2].item() == pytest.approx(((unit(cross[0], dim=0) - unit(cross[2], dim=0)) ** 2).sum().item(), rel=1e-5)


def test_triple_kernel_gak_on_single_slices_is_the_local_kernel() -> None:
    kernel = TripleKernel(expert_dim=4)
    generator = torch.Generator().manual_seed(13)
    expert = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    slices = kernel.pack(expert, torch.randn(6, 3, generator=generator, dtype=torch.float64))
    modality = torch.tensor([IMAGE, TEXT, IMAGE, TEXT, TEXT, IMAGE])
    matrix = gak_matrix(
        slices.unsqueeze(1), torch.ones(6, dtype=torch.long), sigma=0.7, kernel=kernel, x_modality=modality.unsqueeze(1)
    )
    log_k = log_local_kernel(kernel.sqdist(slices, slices, modality, modality), 1 / (2 * 0.7**2))
    normalized = log_k - 0.5 * (log_k.diagonal().unsqueeze(1) + log_k.diagonal().unsqueeze(0))
    torch.testing.assert_close(matrix.log(), normalized.clamp(max=0))


def test_triple_kernel_in_gak_differs_from_plain_euclidean_only_across_modalities() -> None:
    kernel = TripleKernel(expert_dim=3)
    generator = torch.Generator().manual_seed(14)
    x = kernel.pack(torch.randn(4, 5, 3, generator=generator), torch.randn(4, 5, 2, generator=generator)).double()
    lengths = torch.tensor([5, 3, 4, 2])
    all_image = torch.full((4, 5), IMAGE)
    # With one modality everywhere the Triple Kernel is the Euclidean kernel on the expert part.
    triple = gak_matrix(x, lengths, sigma=1.0, kernel=kernel, x_modality=all_image)
    plain = gak_matrix(x[..., :3].contiguous(), lengths, sigma=1.0, kernel=SquaredEuclidean())
    torch.testing.assert_close(triple, plain)


def test_runs_on_cuda_with_the_same_code() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    generator = torch.Generator().manual_seed(15)
    x, lengths = padded(random_set(generator, 20, 6, 8))
    cpu = gak_matrix(x, lengths, delta=0.5)
    gpu = gak_matrix(x.cuda(), lengths.cuda(), delta=0.5)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of sigma"),
        ({"sigma": 1.0, "delta": 1.0}, "exactly one of sigma"),
        ({"sigma": -1.0}, "sigma must be a finite positive"),
        ({"delta": float("nan")}, "delta must be a finite positive"),
    ],
)
def test_bandwidth_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gak_matrix(torch.zeros(2, 3, 4), torch.tensor([1, 3]), **kwargs)


def test_input_errors_name_the_argument() -> None:
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"x_lengths must lie in \[1, 3\]"):
        gak_matrix(x, torch.tensor([0, 3]), sigma=1.0)
    with pytest.raises(ValueError, match=r"x_lengths must have shape \(2,\)"):
        gak_matrix(x, torch.tensor([1, 2, 3]), sigma=1.0)
    with pytest.raises(ValueError, match="padded float tensor"):
        gak_matrix(torch.zeros(3, 4), torch.tensor([1, 2, 3]), sigma=1.0)
    with pytest.raises(ValueError, match="y and y_lengths together"):
        gak_matrix(x, torch.tensor([1, 2]), x, sigma=1.0)
    with pytest.raises(ValueError, match="slice width"):
        gak_matrix(x, torch.tensor([1, 2]), torch.zeros(2, 3, 5), torch.tensor([1, 2]), sigma=1.0)
    with pytest.raises(ValueError, match="TripleKernel needs x_modality"):
        gak_matrix(x, torch.tensor([1, 2]), sigma=1.0, kernel=TripleKernel(expert_dim=2))
    with pytest.raises(ValueError, match=r"x_modality must have shape \(2, 3\)"):
        gak_matrix(x, torch.tensor([1, 2]), sigma=1.0, kernel=TripleKernel(expert_dim=2), x_modality=torch.zeros(2, 2))


def test_large_batch_runs_within_four_gigabytes() -> None:
    """B = 2048 sequences of up to 16 slices, D = 1536: the whole process stays under 4 GiB."""
    import subprocess
    import sys

    script = (
        "import resource, torch\n"
        "from sugar.align import gak_matrix\n"
        "g = torch.Generator().manual_seed(0)\n"
        "x = torch.nn.functional.normalize(torch.randn(2048, 16, 1536, generator=g), dim=-1)\n"
        "lengths = torch.randint(1, 17, (2048,), generator=g)\n"
        "with torch.no_grad():\n"
        "    k = gak_matrix(x, lengths, delta=1.0)\n"
        "assert torch.isfinite(k).all() and k.shape == (2048, 2048)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    peak_bytes = int(output.stdout.strip().splitlines()[-1]) * 1024
    assert peak_bytes < 4 * 2**30, f"peak resident memory {peak_bytes / 2**30:.2f} GiB"


# --- the wavefront engine (one step per anti-diagonal) -----------------------------------------


@pytest.mark.parametrize("engine", ["wavefront", "compiled"])
@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5])
def test_wavefront_matches_brute_force_over_every_path(sigma: float, engine: str) -> None:
    generator = torch.Generator().manual_seed(21)
    for n, m in itertools.product(range(1, 6), repeat=2):
        x = torch.randn(1, n, 3, generator=generator, dtype=torch.float64) * 0.6
        y = torch.randn(1, m, 3, generator=generator, dtype=torch.float64) * 0.6
        expected = brute_force_gak(x[0].numpy(), y[0].numpy(), sigma)
        lengths_x, lengths_y = torch.tensor([n]), torch.tensor([m])
        raw = gak_matrix(x, lengths_x, y, lengths_y, sigma=sigma, normalize=False, engine=engine)
        assert raw.item() == pytest.approx(expected, rel=1e-10, abs=0)
        normalized = expected / math.sqrt(
            brute_force_gak(x[0].numpy(), x[0].numpy(), sigma) * brute_force_gak(y[0].numpy(), y[0].numpy(), sigma)
        )
        got = gak_matrix(x, lengths_x, y, lengths_y, sigma=sigma, engine=engine)
        assert got.item() == pytest.approx(normalized, rel=1e-10, abs=0)


def test_engines_agree_on_mixed_lengths_blocks_and_bandwidths() -> None:
    generator = torch.Generator().manual_seed(22)
    x, x_lengths = padded(random_set(generator, 17, 13, 4))
    y, y_lengths = padded(random_set(generator, 9, 20, 4))
    for bandwidth in ({"sigma": 0.7}, {"delta": 0.4}):
        for chunk_bytes in (DEFAULT_CHUNK_BYTES, 4096):
            for pair in ((x, x_lengths), (x, x_lengths, y, y_lengths)):
                cells = gak_matrix(*pair, **bandwidth, normalize=False, log=True, engine="cells")
                for engine in ("wavefront", "compiled"):
                    sweep = gak_matrix(*pair, **bandwidth, normalize=False, log=True, engine=engine, chunk_bytes=chunk_bytes)
                    torch.testing.assert_close(sweep, cells, rtol=1e-12, atol=1e-12)
                    torch.testing.assert_close(
                        gak_matrix(*pair, **bandwidth, engine=engine, chunk_bytes=chunk_bytes),
                        gak_matrix(*pair, **bandwidth, engine="cells"),
                        rtol=1e-12,
                        atol=1e-14,
                    )


def test_wavefront_matches_tslearn_with_lengths_1_to_256_in_one_batch() -> None:
    from tslearn.metrics import cdist_gak
    from tslearn.utils import to_time_series_dataset

    generator = torch.Generator().manual_seed(23)
    lengths = [1, 2, 3, 7, 31, 64, 100, 128, 199, 255, 256]
    sequences = [torch.randn(n, 3, generator=generator, dtype=torch.float64) * 0.3 for n in lengths]
    x, x_lengths = padded(sequences)
    expected = cdist_gak(to_time_series_dataset([s.numpy() for s in sequences]), sigma=1.5)
    for engine in ("wavefront", "compiled"):
        got = gak_matrix(x, x_lengths, sigma=1.5, engine=engine)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=0)
        cross = gak_matrix(x[:6], x_lengths[:6], x[6:], x_lengths[6:], sigma=1.5, engine=engine)
        np.testing.assert_allclose(cross.numpy(), expected[:6, 6:], rtol=1e-6, atol=0)


@pytest.mark.parametrize("engine", ["wavefront", "compiled"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sigma", [1e-3, 1.0, 1e3])
def test_wavefront_at_length_256_stays_finite(dtype: torch.dtype, sigma: float, engine: str) -> None:
    generator = torch.Generator().manual_seed(24)
    x = torch.nn.functional.normalize(torch.randn(3, 256, 16, generator=generator), dim=-1).to(dtype)
    lengths = torch.tensor([256, 192, 17])
    for normalize in (True, False):
        log_matrix = gak_matrix(x, lengths, sigma=sigma, normalize=normalize, log=True, engine=engine)
        assert torch.isfinite(log_matrix).all(), (sigma, normalize)
    cross = gak_matrix(x[:1], lengths[:1], x[1:], lengths[1:], sigma=sigma, log=True, engine=engine)
    assert torch.isfinite(cross).all() and (cross <= 0).all()
    matrix = gak_matrix(x, lengths, sigma=sigma, engine=engine)
    assert torch.allclose(matrix.diagonal(), torch.ones(3, dtype=dtype))


def test_wavefront_gradcheck_in_float64() -> None:
    generator = torch.Generator().manual_seed(25)
    x = torch.randn(3, 5, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 4, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    x_lengths, y_lengths = torch.tensor([5, 2, 3]), torch.tensor([4, 1])
    assert torch.autograd.gradcheck(
        lambda a, b: gak_matrix(a, x_lengths, b, y_lengths, sigma=0.9, log=True, engine="wavefront"), (x, y)
    )
    assert torch.autograd.gradcheck(lambda a: gak_matrix(a, x_lengths, delta=0.6, engine="wavefront"), (x,))
    assert torch.autograd.gradcheck(
        lambda a, b: gak_matrix(a, x_lengths, b, y_lengths, sigma=0.9, normalize=False, log=True, engine="wavefront"),
        (x, y),
    )


def test_wavefront_gradcheck_triple_kernel() -> None:
    generator = torch.Generator().manual_seed(26)
    kernel = TripleKernel(expert_dim=3)
    x = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    modality = torch.tensor([[IMAGE, TEXT, TEXT, IMAGE], [TEXT, IMAGE, IMAGE, TEXT], [IMAGE, IMAGE, TEXT, TEXT]])
    lengths = torch.tensor([4, 2, 3])

    def value(raw: torch.Tensor) -> torch.Tensor:
        packed = kernel.pack(raw[..., :3], raw[..., 3:])
        return gak_matrix(packed, lengths, delta=0.5, kernel=kernel, x_modality=modality, engine="wavefront")

    assert torch.autograd.gradcheck(value, (x,))
    packed = kernel.pack(x[..., :3], x[..., 3:]).detach()
    torch.testing.assert_close(
        gak_matrix(packed, lengths, delta=0.5, kernel=kernel, x_modality=modality, engine="wavefront"),
        gak_matrix(packed, lengths, delta=0.5, kernel=kernel, x_modality=modality, engine="cells"),
        rtol=1e-12,
        atol=1e-14,
    )


def test_wavefront_gradients_match_the_cell_engine_and_ignore_nan_padding() -> None:
    generator = torch.Generator().manual_seed(27)
    sequences = random_set(generator, 7, 12, 3)
    gradients = {}
    for engine in ("cells", "wavefront"):
        x, lengths = padded(sequences, fill=float("nan"))
        x.requires_grad_(True)
        y, y_lengths = padded(sequences[:4], fill=float("nan"))
        y.requires_grad_(True)
        total = gak_matrix(x, lengths, delta=0.5, engine=engine).sum()
        total = total + gak_matrix(x, lengths, y, y_lengths, sigma=0.8, log=True, engine=engine).sum()
        total.backward()
        valid = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        y_valid = torch.arange(y.shape[1]).unsqueeze(0) < y_lengths.unsqueeze(1)
        assert torch.isfinite(x.grad[valid]).all() and torch.isfinite(y.grad[y_valid]).all(), engine
        gradients[engine] = (x.grad[valid], y.grad[y_valid])
    for cells, sweep in zip(gradients["cells"], gradients["wavefront"]):
        torch.testing.assert_close(sweep, cells, rtol=1e-10, atol=1e-12)


def test_engine_is_chosen_by_shape_and_checked() -> None:
    from sugar.align import prefers_wavefront

    assert not prefers_wavefront(8, 8) and prefers_wavefront(64, 64) and prefers_wavefront(256, 256)
    with pytest.raises(ValueError, match="engine must be"):
        gak_matrix(torch.zeros(2, 3, 4), torch.tensor([1, 3]), sigma=1.0, engine="fast")


# --- the compiled CPU recursion (numba) ---------------------------------------------------------


def test_compiled_engine_falls_back_to_log_space_exactly_where_plain_values_would_underflow() -> None:
    from sugar import gak_compiled

    generator = torch.Generator().manual_seed(28)
    x = torch.nn.functional.normalize(torch.randn(4, 200, 8, generator=generator, dtype=torch.float64), dim=-1)
    lengths = torch.tensor([200, 150, 40, 3])
    for sigma in (1e-2, 0.05, 1.0, 1e3):  # far below, near and well inside float64's range
        sweep = gak_matrix(x, lengths, sigma=sigma, normalize=False, log=True, engine="wavefront")
        compiled = gak_matrix(x, lengths, sigma=sigma, normalize=False, log=True, engine="compiled")
        torch.testing.assert_close(compiled, sweep, rtol=1e-12, atol=1e-10)  # log values near 0 at sigma = 1e3
    # the log-space path itself against the plain one where both apply
    phi = torch.cdist(x[0, :50], x[1, :60]).pow(2).numpy()
    rows = np.full(201, np.nan), np.full(201, np.nan)  # work rows, reused: stale cells are never read
    plain = gak_compiled._pair(phi, 0.5, 0, 50, 0, 60, *rows)
    assert gak_compiled._log_pair(phi, 0.5, 0, 50, 0, 60) == pytest.approx(plain, rel=1e-13)
    # at sigma = 1e-2 plain values leave float64's range: the pair must have been rerun
    phi = torch.cdist(x[0], x[1, :150]).pow(2).numpy()
    assert gak_compiled._pair(phi, 5e3, 0, 200, 0, 150, *rows) == gak_compiled._log_pair(phi, 5e3, 0, 200, 0, 150)
    assert gak_compiled._pair(phi, 0.5, 0, 3, 0, 2, *rows) == pytest.approx(gak_compiled._log_pair(phi, 0.5, 0, 3, 0, 2), rel=1e-13)


def test_compiled_engine_reads_only_valid_slices_and_takes_the_triple_kernel() -> None:
    generator = torch.Generator().manual_seed(29)
    sequences = random_set(generator, 9, 30, 6)
    x, lengths = padded(sequences, fill=float("nan"))
    kernel = TripleKernel(expert_dim=3)
    packed = kernel.pack(x[..., :3].nan_to_num(), x[..., 3:].nan_to_num())
    packed[torch.arange(x.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1)] = float("nan")
    modality = torch.randint(0, 2, x.shape[:2], generator=generator)
    for engine in ("cells", "compiled"):
        assert torch.isfinite(gak_matrix(x, lengths, delta=0.5, engine=engine)).all()
    torch.testing.assert_close(
        gak_matrix(packed, lengths, delta=0.5, kernel=kernel, x_modality=modality, engine="compiled"),
        gak_matrix(packed, lengths, delta=0.5, kernel=kernel, x_modality=modality, engine="cells"),
        rtol=1e-12,
        atol=1e-14,
    )


def test_compiled_engine_is_refused_under_autograd_and_auto_avoids_it() -> None:
    from sugar.align import choose_engine, compiled_available

    x = torch.randn(3, 20, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([20, 11, 5])
    with pytest.raises(ValueError, match="compiled"):
        gak_matrix(x, lengths, sigma=1.0, engine="compiled")
    assert compiled_available()
    assert choose_engine(20, 20, torch.device("cpu"), with_grad=True) == "wavefront"
    assert choose_engine(20, 20, torch.device("cpu"), with_grad=False) == "compiled"
    assert choose_engine(20, 20, torch.device("cuda"), with_grad=False) == "wavefront"
    gak_matrix(x, lengths, sigma=1.0).sum().backward()  # auto picks a differentiable engine
    assert torch.isfinite(x.grad).all()
