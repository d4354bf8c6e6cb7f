"""Batched, log-space Global Alignment Kernel (GAK) over all pairs of two sets of sequences.

The GAK sums, over every monotone alignment path between slice sequences x (length n) and y
(length m), the product of local kernels along the path (method.md section 5):

    M[i, j] = k(x_i, y_j) * (M[i-1, j] + M[i, j-1] + M[i-1, j-1]),   K(x, y) = M[n, m]

Raw values grow combinatorially with length, so everything runs in log space.

How it is batched: sequences are sorted by length and their slices laid out slice-major (all
first slices, then all second slices, ...). Then, for every cell (i, j), the pairs that have
that cell form the top-left block of the pair matrix, and their local kernels are one
contiguous block of the slice-by-slice distance matrix. The recursion runs once per cell over
all pairs at once, on exactly the cells that exist (padding is never aligned), and the only
large product is one GEMM of all slices against all slices. Blocks of pairs bound the memory.

This module imports nothing from `sugar` but the local kernels: it is the numeric core.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from sugar.kernels import LocalKernel, SquaredEuclidean

DEFAULT_CHUNK_BYTES = 256 * 2**20


def log_local_kernel(phi: Tensor, inv_two_sigma_sq: Tensor | float) -> Tensor:
    """log k for k = kappa / (2 - kappa), kappa = exp(-phi / (2 sigma^2)); stable for any phi >= 0."""
    t = phi * inv_two_sigma_sq
    # log(2 - e^-t) = log1p(-expm1(-t)): exact near t = 0, tends to log 2 for large t.
    if torch.is_grad_enabled() and t.requires_grad:
        return -t - torch.log1p(-torch.expm1(-t))
    # Same arithmetic in place: on large blocks the fresh allocations cost more than the maths.
    return torch.neg(t).expm1_().neg_().log1p_().add_(t).neg_()


def _bandwidth_scale(
    sigma: float | None, delta: float | None, n: Tensor, m: Tensor, dtype: torch.dtype
) -> Tensor | float:
    """1 / (2 sigma^2): fixed sigma, or the paper's sigma = delta * sqrt((n + m) / 2) per pair.

    `n` and `m` broadcast against each other (a column with a row gives a matrix).
    """
    if sigma is not None:
        return 1.0 / (2.0 * sigma * sigma)
    assert delta is not None
    return 1.0 / (delta * delta * (n + m).to(dtype))


def _log_sum_exp3(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    top = torch.maximum(torch.maximum(a, b), c)
    total = torch.exp(a - top) + torch.exp(b - top) + torch.exp(c - top)
    return top + torch.log(total)


class _Layout:
    """Sequences sorted by length (longest first) with their slices laid out slice-major.

    After sorting, the sequences that have an i-th slice are a prefix of the order, of size
    `counts[i]`; rows `offsets[i] : offsets[i] + counts[i]` of `slices` are those i-th slices.
    So the local kernels of all pairs at cell (i, j) form one contiguous block of the
    slice-by-slice matrix, and the pairs that end at (i, j) form a contiguous sub-block.
    """

    def __init__(self, x: Tensor, lengths: Tensor, modality: Tensor | None) -> None:
        batch, max_len, dim = x.shape
        self.order = torch.argsort(lengths, descending=True, stable=True)
        self.sorted_lengths = lengths[self.order]
        positions = torch.arange(max_len, device=x.device)
        self.counts: list[int] = (self.sorted_lengths.unsqueeze(0) > positions.unsqueeze(1)).sum(1).tolist()
        self.max_len = self.counts.index(0) if 0 in self.counts else max_len
        self.offsets: list[int] = [0]
        for count in self.counts:
            self.offsets.append(self.offsets[-1] + count)
        index = torch.cat([self.order[:count] * max_len + i for i, count in enumerate(self.counts)])
        self.slices = x.reshape(batch * max_len, dim)[index]
        self.modality = None if modality is None else modality.reshape(-1)[index]
        # the length of the sequence each slice row belongs to (for the per-pair bandwidth)
        self.row_lengths = torch.cat([self.sorted_lengths[:count] for count in self.counts])

    def rows(self, i: int) -> slice:
        return slice(self.offsets[i], self.offsets[i] + self.counts[i])

    def ending_at(self, i: int) -> slice:
        """Sorted positions of the sequences whose last slice is slice i."""
        after = self.counts[i + 1] if i + 1 < len(self.counts) else 0
        return slice(after, self.counts[i])


def _run_cells(
    num_rows: int,
    num_cols: int,
    local: Callable[[int, int], Tensor],
    crop: Callable[[Tensor, int, int], Tensor],
    finish: Callable[[Tensor, int, int], None],
    symmetric: bool = False,
) -> None:
    """The GAK recursion, one cell (i, j) at a time, each cell a tensor over all pairs having it.

    `local(i, j)` gives the local log-kernels of the pairs present at (i, j) (empty when none);
    `crop` narrows a neighbour cell's tensor to those pairs (always a leading block, since pairs
    are sorted by length); `finish` sees each cell so pairs ending there can keep their value.
    `symmetric` (a set against itself): cell (j, i) is cell (i, j) transposed, so only cells
    with i <= j are computed.
    """
    previous_row: dict[int, Tensor] = {}
    for i in range(num_rows):
        row: dict[int, Tensor] = {}
        for j in range(i if symmetric else 0, num_cols):
            log_k = local(i, j)
            if log_k.numel() == 0:
                break
            if i == 0 and j == 0:
                value = log_k  # M[0, 0] = 1
            elif i == 0:
                value = log_k + crop(row[j - 1], i, j)
            elif j == 0:
                value = log_k + crop(previous_row[0], i, j)
            else:
                left = row[j - 1] if j - 1 in row else previous_row[j].T
                value = log_k + _log_sum_exp3(
                    crop(previous_row[j], i, j), crop(left, i, j), crop(previous_row[j - 1], i, j)
                )
            finish(value, i, j)
            row[j] = value
        if not row:
            break
        previous_row = row


def _log_gak_pairs(log_k: Tensor, x_layout: _Layout, y_layout: _Layout) -> Tensor:
    """Unnormalised log GAK of every pair of two laid-out sets, from the slice-major
    log-kernel matrix; (Bx, By) in the layouts' sorted order."""
    result = log_k.new_zeros(len(x_layout.order), len(y_layout.order))
    symmetric = x_layout is y_layout

    def local(i: int, j: int) -> Tensor:
        if i >= x_layout.max_len or j >= y_layout.max_len:
            return log_k[:0, :0]
        return log_k[x_layout.rows(i), y_layout.rows(j)]

    def crop(value: Tensor, i: int, j: int) -> Tensor:
        return value[: x_layout.counts[i], : y_layout.counts[j]]

    def finish(value: Tensor, i: int, j: int) -> None:
        rows, cols = x_layout.ending_at(i), y_layout.ending_at(j)
        if rows.stop > rows.start and cols.stop > cols.start:
            result[rows, cols] = value[rows, cols]
        if symmetric and i != j:
            rows, cols = x_layout.ending_at(j), y_layout.ending_at(i)
            if rows.stop > rows.start and cols.stop > cols.start:
                result[rows, cols] = value[cols, rows].T

    _run_cells(x_layout.max_len, y_layout.max_len, local, crop, finish, symmetric)
    return result


def _log_gak_self(
    x: Tensor,
    lengths: Tensor,
    modality: Tensor | None,
    kernel: LocalKernel,
    sigma: float | None,
    delta: float | None,
) -> Tensor:
    """log K(x_b, x_b) for each sequence: the normalisers, at the cost of B pairs, not B^2."""
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_lengths = lengths[order]
    counts: list[int] = (sorted_lengths.unsqueeze(0) > torch.arange(x.shape[1], device=x.device).unsqueeze(1)).sum(1).tolist()
    ordered = x[order]
    ordered_modality = None if modality is None else modality[order]
    phi = kernel.sqdist(ordered, ordered, ordered_modality, ordered_modality)  # (B, L, L)
    scale = _bandwidth_scale(sigma, delta, sorted_lengths, sorted_lengths, x.dtype)
    log_k = log_local_kernel(phi, scale.view(-1, 1, 1) if isinstance(scale, Tensor) else scale)
    result = log_k.new_zeros(x.shape[0])

    def local(i: int, j: int) -> Tensor:
        return log_k[: min(counts[i], counts[j]), i, j]

    def crop(value: Tensor, i: int, j: int) -> Tensor:
        return value[: min(counts[i], counts[j])]

    def finish(value: Tensor, i: int, j: int) -> None:
        if i == j:
            ending = slice(counts[i + 1] if i + 1 < len(counts) else 0, counts[i])
            result[ending] = value[ending]

    _run_cells(x.shape[1], x.shape[1], local, crop, finish)
    return result[torch.argsort(order)]


def _check_lengths(lengths: Tensor, batch: int, max_len: int, name: str) -> Tensor:
    if not isinstance(lengths, Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},), got {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got dtype {lengths.dtype}")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > max_len):
        raise ValueError(
            f"{name} must lie in [1, {max_len}] (the padded length), "
            f"got min {int(lengths.min())} and max {int(lengths.max())}"
        )
    return lengths.long()


def _check_sequences(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a padded float tensor (B, L, D), got {shape}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one sequence of at least one slice, got {tuple(x.shape)}")


def _check_bandwidth(sigma: float | None, delta: float | None) -> None:
    if (sigma is None) == (delta is None):
        raise ValueError(
            "give exactly one of sigma (fixed bandwidth) or delta "
            "(sigma = delta * sqrt((n + m) / 2) per pair)"
        )
    value, name = (sigma, "sigma") if sigma is not None else (delta, "delta")
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")


def _check_modality(modality: Tensor | None, x: Tensor, kernel: LocalKernel, name: str) -> Tensor | None:
    if not kernel.needs_modality:
        return None
    if modality is None:
        raise ValueError(
            f"{type(kernel).__name__} needs {name} (B, L) with per-slice modality ids (0 = image, 1 = text)"
        )
    modality = torch.as_tensor(modality, device=x.device)
    if tuple(modality.shape) != tuple(x.shape[:2]):
        raise ValueError(f"{name} must have shape {tuple(x.shape[:2])}, got {tuple(modality.shape)}")
    return modality


def _block_sizes(
    rows: int, cols: int, max_n: int, max_m: int, element_size: int, with_grad: bool, chunk_bytes: int
) -> tuple[int, int]:
    """Sequences per block so one block's distances and recursion fit in about chunk_bytes."""
    # distances + kernels + two rows of cells (every cell kept for backward under autograd)
    tensors_per_cell = 10 if with_grad else 3
    bytes_per_pair = max_n * max_m * tensors_per_cell * element_size + 2 * max_m * element_size
    pairs = max(1, chunk_bytes // bytes_per_pair)
    side = max(1, math.isqrt(pairs))
    block_rows = min(rows, side)
    return block_rows, min(cols, max(side, pairs // block_rows))


def gak_matrix(
    x: Tensor,
    x_lengths: Tensor,
    y: Tensor | None = None,
    y_lengths: Tensor | None = None,
    *,
    sigma: float | None = None,
    delta: float | None = None,
    kernel: LocalKernel | None = None,
    x_modality: Tensor | None = None,
    y_modality: Tensor | None = None,
    normalize: bool = True,
    log: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Tensor:
    """GAK between every sequence of x and every sequence of y: shape (B, B').

    x: padded (B, L, D) with lengths (B,); y likewise, or None for y = x (then only one
    triangle of pairs is computed). Exactly one of `sigma` (fixed, tslearn's convention) or
    `delta` (sigma = delta * sqrt((n + m) / 2) per pair). `kernel` gives the local squared
    distance (default squared Euclidean); a kernel with `needs_modality` (the Triple Kernel)
    reads `x_modality` / `y_modality`, (B, L) ids. `normalize` divides by sqrt(K(x,x) K(y,y))
    and clamps at 1; `log` returns log values. Differentiable in x and y. Each block of pairs
    uses about `chunk_bytes` of working memory.
    """
    kernel = kernel or SquaredEuclidean()
    _check_sequences(x, "x")
    _check_bandwidth(sigma, delta)
    if (y is None) != (y_lengths is None):
        raise ValueError("give y and y_lengths together (or neither, for y = x)")
    symmetric = y is None
    x_lengths = _check_lengths(x_lengths, x.shape[0], x.shape[1], "x_lengths").to(x.device)
    x_modality = _check_modality(x_modality, x, kernel, "x_modality")
    if symmetric:
        y, y_lengths, y_modality = x, x_lengths, x_modality
    else:
        _check_sequences(y, "y")
        if y.shape[2] != x.shape[2]:
            raise ValueError(f"x and y must share the slice width D, got {x.shape[2]} and {y.shape[2]}")
        y_lengths = _check_lengths(y_lengths, y.shape[0], y.shape[1], "y_lengths").to(x.device)
        y_modality = _check_modality(y_modality, y, kernel, "y_modality")
        y = y.to(device=x.device, dtype=x.dtype)

    with_grad = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)
    block_rows, block_cols = _block_sizes(
        x.shape[0], y.shape[0], x.shape[1], y.shape[1], x.element_size(), with_grad, chunk_bytes
    )
    if symmetric:  # square blocks, so the upper triangle of blocks covers every pair
        block_rows = block_cols = min(block_rows, block_cols)

    def layout(z: Tensor, lengths: Tensor, modality: Tensor | None, part: slice) -> _Layout:
        return _Layout(z[part], lengths[part], None if modality is None else modality[part])

    def block(x_part: slice, y_part: slice) -> Tensor:
        x_layout = layout(x, x_lengths, x_modality, x_part)
        y_layout = x_layout if symmetric and x_part == y_part else layout(y, y_lengths, y_modality, y_part)
        phi = kernel.sqdist(x_layout.slices, y_layout.slices, x_layout.modality, y_layout.modality)
        scale = _bandwidth_scale(
            sigma, delta, x_layout.row_lengths.unsqueeze(1), y_layout.row_lengths.unsqueeze(0), x.dtype
        )
        values = _log_gak_pairs(log_local_kernel(phi, scale), x_layout, y_layout)
        # back from sorted order to the callers' order
        return values[torch.argsort(x_layout.order)][:, torch.argsort(y_layout.order)]

    x_parts = [slice(s, min(x.shape[0], s + block_rows)) for s in range(0, x.shape[0], block_rows)]
    y_parts = [slice(s, min(y.shape[0], s + block_cols)) for s in range(0, y.shape[0], block_cols)]
    blocks: dict[tuple[int, int], Tensor] = {}
    for a, x_part in enumerate(x_parts):
        for b, y_part in enumerate(y_parts):
            if symmetric and b < a:
                blocks[a, b] = blocks[b, a].T  # K(x, y) = K(y, x)
            else:
                blocks[a, b] = block(x_part, y_part)
    log_raw = torch.cat(
        [torch.cat([blocks[a, b] for b in range(len(y_parts))], dim=1) for a in range(len(x_parts))], dim=0
    )

    if not normalize:
        return log_raw if log else log_raw.exp()
    if symmetric:
        self_x = self_y = log_raw.diagonal()
    else:
        self_x = _log_gak_self(x, x_lengths, x_modality, kernel, sigma, delta)
        self_y = _log_gak_self(y, y_lengths, y_modality, kernel, sigma, delta)
    log_normalized = (log_raw - 0.5 * (self_x.unsqueeze(1) + self_y.unsqueeze(0))).clamp(max=0.0)
    return log_normalized if log else log_normalized.exp()


def gak(
    x: Tensor,
    y: Tensor,
    *,
    sigma: float | None = None,
    delta: float | None = None,
    kernel: LocalKernel | None = None,
    x_modality: Tensor | None = None,
    y_modality: Tensor | None = None,
    normalize: bool = True,
    log: bool = False,
) -> Tensor:
    """GAK of one pair of unpadded sequences x (n, D) and y (m, D): a scalar tensor."""
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError(f"gak takes two (length, D) sequences, got {tuple(x.shape)} and {tuple(y.shape)}")
    value = gak_matrix(
        x.unsqueeze(0),
        torch.tensor([x.shape[0]]),
        y.unsqueeze(0),
        torch.tensor([y.shape[0]]),
        sigma=sigma,
        delta=delta,
        kernel=kernel,
        x_modality=None if x_modality is None else torch.as_tensor(x_modality).unsqueeze(0),
        y_modality=None if y_modality is None else torch.as_tensor(y_modality).unsqueeze(0),
        normalize=normalize,
        log=log,
    )
    return value[0, 0]


def soft_alignment(
    x: Tensor,
    y: Tensor,
    *,
    sigma: float | None = None,
    delta: float | None = None,
    kernel: LocalKernel | None = None,
    x_modality: Tensor | None = None,
    y_modality: Tensor | None = None,
) -> Tensor:
    """Expected alignment (n, m) of one pair: d log K / d log k(x_i, y_j).

    Entry (i, j) is the probability that a path drawn with weight proportional to its product
    of local kernels passes through cell (i, j): the soft version of the DTW path.
    """
    kernel = kernel or SquaredEuclidean()
    _check_bandwidth(sigma, delta)
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] == 0 or y.shape[0] == 0:
        raise ValueError(
            f"soft_alignment takes two non-empty (length, D) sequences, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    x_mod = None if x_modality is None else torch.as_tensor(x_modality, device=x.device)
    y_mod = None if y_modality is None else torch.as_tensor(y_modality, device=x.device)
    if kernel.needs_modality and (x_mod is None or y_mod is None):
        raise ValueError(f"{type(kernel).__name__} needs x_modality and y_modality (0 = image, 1 = text)")
    n, m = torch.tensor(x.shape[0]), torch.tensor(y.shape[0])
    with torch.enable_grad():
        phi = kernel.sqdist(x.detach(), y.detach(), x_mod, y_mod)
        log_k = log_local_kernel(phi, _bandwidth_scale(sigma, delta, n, m, x.dtype)).detach().requires_grad_(True)
        one = torch.ones(1, dtype=torch.long, device=x.device)
        x_layout = _Layout(x.detach().unsqueeze(0), one * x.shape[0], None)
        y_layout = _Layout(y.detach().unsqueeze(0), one * y.shape[0], None)
        log_value = _log_gak_pairs(log_k, x_layout, y_layout)[0, 0]
        (alignment,) = torch.autograd.grad(log_value, log_k)
    return alignment
