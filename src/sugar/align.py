"""Batched, log-space Global Alignment Kernel (GAK) over all pairs of two sets of sequences.

The GAK sums, over every monotone alignment path between slice sequences x (length n) and y
(length m), the product of local kernels along the path (method.md section 5):

    M[i, j] = k(x_i, y_j) * (M[i-1, j] + M[i, j-1] + M[i-1, j-1]),   K(x, y) = M[n, m]

Raw values grow combinatorially with length, so everything runs in log space.

Two engines compute the same values; `gak_matrix` picks one by the longest lengths.

- Cells: sequences sorted by length and their slices laid out slice-major (all first slices,
  then all second slices, ...). For every cell (i, j), the pairs that have that cell form the
  top-left block of the pair matrix and their local kernels one contiguous block of the
  slice-by-slice matrix, so the recursion runs once per cell over all pairs at once: n * m
  Python steps, cheap on short sequences.
- Wavefront: every cell on an anti-diagonal i + j = d depends only on diagonals d - 1 and d - 2,
  so one vectorised step per diagonal covers all pairs: n + m - 1 steps, for long sequences.

Either way padding is never aligned, the only large product is one GEMM of all slices against
all slices, and blocks of pairs bound the memory.

This module imports nothing from `sugar` but the local kernels: it is the numeric core.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from sugar.kernels import LocalKernel, SquaredEuclidean, sqdist_into

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
    valid = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < sorted_lengths.unsqueeze(1)
    # padding may hold NaN: harmless forward (never aligned), but 0 * NaN in the backward
    ordered = x[order].masked_fill(~valid.unsqueeze(-1), 0.0)
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


# ---------------------------------------------------------------------------------------------
# The wavefront engine: one vectorised step per anti-diagonal i + j = d, over all pairs at once.
#
# Pairs are listed (not gridded), sorted by n + m descending, so the pairs still running on
# diagonal d are a prefix of the list and the pairs that end there are a contiguous run. The
# local log-kernels are stored skewed, so that a pair's cells on one diagonal are contiguous:
# cell (i, j) of pair p sits at base[p] + (i + j) * diagonal_stride + i of one flat tensor.
# All pairs on a diagonal share one range of i, so a pair also visits cells outside its own
# n x m rectangle ("outside cells"), which read finite but meaningless log-kernels. That is
# harmless: a cell inside the rectangle only ever reads cells inside it or on its border (row
# or column -1), so an outside value never reaches a pair's result, and the backward sweep
# gives outside cells an occupancy of exactly zero.
# ---------------------------------------------------------------------------------------------

_NEG_INF = float("-inf")
_TILE_ELEMENTS = 2**15  # rows of the local-kernel matrix are filled in tiles about this size
_TILE_MIN_ROWS = 256  # but never thinner: each tile is one matrix product against all columns


class _Plan:
    """Per-diagonal bookkeeping of a sorted pair list: who is still running, and over which i.

    On diagonal d the first `active[d]` pairs run over i in [lo[d], hi[d]]: every cell of
    every running pair's rectangle on that diagonal, and never an i or j past the largest n or
    m of the running pairs (so every read stays inside what the caller laid out).
    """

    def __init__(self, n: Tensor, m: Tensor) -> None:
        ends = n + m - 2  # the diagonal each pair ends on, non-increasing
        self.num_diagonals = int(ends[0]) + 1
        counts = torch.bincount(ends, minlength=self.num_diagonals).tolist()
        running_n = torch.cummax(n, 0).values.tolist()
        running_m = torch.cummax(m, 0).values.tolist()
        self.active: list[int] = [0] * (self.num_diagonals + 2)
        self.lo: list[int] = [0] * self.num_diagonals
        self.hi: list[int] = [0] * self.num_diagonals
        total = 0
        for d in reversed(range(self.num_diagonals)):
            total += counts[d]
            self.active[d] = total
            self.lo[d] = max(0, d - running_m[total - 1] + 1)
            self.hi[d] = min(d, running_n[total - 1] - 1)
        self.max_n = running_n[-1]
        self.widths = [hi - lo + 1 for lo, hi in zip(self.lo, self.hi)]


def _diagonal_index(base: Tensor, diagonal_stride: int, plan: _Plan, d: int, out: Tensor) -> Tensor:
    """Flat positions of the cells (i, d - i), i in [lo, hi], of the pairs running on d."""
    count, lo, width = plan.active[d], plan.lo[d], plan.widths[d]
    steps = torch.arange(d * diagonal_stride + lo, d * diagonal_stride + lo + width, device=base.device)
    return torch.add(base[:count].unsqueeze(1), steps, out=out[: count * width].view(count, width)).view(-1)


def _sweep_forward(
    flat: Tensor, base: Tensor, n: Tensor, diagonal_stride: int, plan: _Plan, keep: bool
) -> tuple[Tensor, list[Tensor]]:
    """log M at every pair's end cell; with `keep`, also every diagonal (for the backward sweep).

    Diagonal d is stored as (active[d], width + 2): column c holds i = lo + c - 1, so the first
    and last columns are -inf margins that the next two diagonals read as borders. Buffers are
    reused (or, with `keep`, carved from one allocation): fresh allocations per diagonal cost
    more in page faults than the arithmetic.
    """
    rows = plan.active[0]
    largest = max(plan.active[d] * plan.widths[d] for d in range(plan.num_diagonals))
    index = torch.empty(largest, dtype=torch.long, device=flat.device)
    log_k_buffer = flat.new_empty(largest)
    sizes = [plan.active[d] * (plan.widths[d] + 2) for d in range(plan.num_diagonals)]
    if keep:
        storage = flat.new_empty(sum(sizes))
        starts = [0]
        for size in sizes[:-1]:
            starts.append(starts[-1] + size)
    else:
        ring = [flat.new_empty(max(sizes)) for _ in range(3)]
    kept: list[Tensor] = []
    ends: list[Tensor] = []
    before: Tensor | None = None  # diagonal d - 2
    previous: Tensor | None = None  # diagonal d - 1
    for d in range(plan.num_diagonals):
        count, lo, hi, width = plan.active[d], plan.lo[d], plan.hi[d], plan.widths[d]
        cells_index = _diagonal_index(base, diagonal_stride, plan, d, index)
        log_k = torch.index_select(flat, 0, cells_index, out=log_k_buffer[: count * width]).view(count, width)
        memory = storage[starts[d] : starts[d] + sizes[d]] if keep else ring[d % 3][: sizes[d]]
        current = memory.view(count, width + 2)
        current[:, :: width + 1].fill_(_NEG_INF)  # the two margin columns
        cells = current[:, 1:-1]
        if previous is None:
            cells.copy_(log_k)  # M[0, 0] = k(x_0, y_0)
        else:
            shift = lo - plan.lo[d - 1]
            # neighbours (i - 1, j) and (i, j - 1) on diagonal d - 1, (i - 1, j - 1) on d - 2
            torch.logaddexp(previous[:count, shift : shift + width], previous[:count, shift + 1 : shift + width + 1], out=cells)
            if before is not None:
                shift = lo - plan.lo[d - 2]
                torch.logaddexp(cells, before[:count, shift : shift + width], out=cells)
            cells.add_(log_k)
        ending = plan.active[d + 1]
        if ending < count:
            ends.append(current[ending:count].gather(1, (n[ending:count] - lo).unsqueeze(1)).squeeze(1))
        if keep:
            kept.append(current)
        before, previous = previous, current
    return torch.cat(ends[::-1]), kept


def _sweep_backward(
    flat: Tensor, base: Tensor, n: Tensor, diagonal_stride: int, plan: _Plan, kept: list[Tensor], grad: Tensor
) -> Tensor:
    """d(sum_p grad_p log K_p) / d flat, by the reverse sweep of path occupancies.

    The occupancy of a cell, the probability that a path passes through it, is
    occ(c) = sum over successors s of occ(s) k(s) M(c) / M(s); every weight is at most 1, and
    in log space log occ(c) = log M(c) + logsumexp_s(log occ(s) + log k(s) - log M(s)). The
    gradient of log K with respect to the local log-kernel of c is occ(c).
    """
    grad_flat = torch.zeros_like(flat)
    rows = plan.active[0]
    largest = max(plan.active[d] * plan.widths[d] for d in range(plan.num_diagonals))
    index = torch.empty(largest, dtype=torch.long, device=flat.device)
    occ_buffer, k_buffer = flat.new_empty(largest), flat.new_empty(largest)
    # terms log occ + log k - log M of diagonals d + 1 and d + 2, by absolute column i + 1
    ring = [flat.new_empty(rows * (plan.max_n + 2)) for _ in range(3)]
    after: Tensor | None = None
    later: Tensor | None = None
    for d in reversed(range(plan.num_diagonals)):
        count, lo, hi, width = plan.active[d], plan.lo[d], plan.hi[d], plan.widths[d]
        log_m = kept[d][:, 1:-1]
        log_occ = occ_buffer[: count * width].view(count, width)
        next_count, far_count = plan.active[d + 1], plan.active[d + 2]
        if next_count:
            assert after is not None
            part = log_occ[:next_count]
            # successors (i + 1, j), (i, j + 1) on diagonal d + 1 and (i + 1, j + 1) on d + 2
            torch.logaddexp(after[:next_count, lo + 2 : hi + 3], after[:next_count, lo + 1 : hi + 2], out=part)
            if far_count:
                assert later is not None
                torch.logaddexp(part[:far_count], later[:far_count, lo + 2 : hi + 3], out=part[:far_count])
            part.add_(log_m[:next_count])
        if next_count < count:  # pairs ending here: occupancy 1 at their end cell, 0 elsewhere
            log_occ[next_count:].fill_(_NEG_INF)
            log_occ[next_count:].scatter_(1, (n[next_count:count] - 1 - lo).unsqueeze(1), 0.0)
        cells_index = _diagonal_index(base, diagonal_stride, plan, d, index)
        if d > 0:
            terms = ring[d % 3][: count * (plan.max_n + 2)].view(count, plan.max_n + 2)
            # -inf wherever diagonals d - 1 and d - 2 read outside the cells written below
            first = min(plan.lo[d - 1] + 1, plan.lo[d - 2] + 2 if d >= 2 else plan.max_n)
            last = max(plan.hi[d - 1] + 2, plan.hi[d - 2] + 2 if d >= 2 else 0)
            terms[:, first : last + 1].fill_(_NEG_INF)
            target = terms[:, lo + 1 : hi + 2]
            log_k = torch.index_select(flat, 0, cells_index, out=k_buffer[: count * width]).view(count, width)
            torch.sub(log_k, log_m, out=target)
            # outside cells: -inf occupancy plus (log k - log M) may be -inf + inf
            target.add_(log_occ).nan_to_num_(nan=_NEG_INF)
            later, after = after, terms
        # outside cells alias other cells of `flat` but carry exactly zero: accumulate
        grad_flat.index_add_(0, cells_index, log_occ.exp_().mul_(grad[:count].unsqueeze(1)).view(-1))
    return grad_flat


class _Sweep(torch.autograd.Function):
    """The wavefront GAK recursion with its own backward sweep (autograd through the -inf
    borders would turn 0 * inf into NaN; the explicit sweep also stores one tensor per diagonal)."""

    @staticmethod
    def forward(ctx, flat: Tensor, base: Tensor, n: Tensor, diagonal_stride: int, plan: _Plan) -> Tensor:  # type: ignore[override]
        values, kept = _sweep_forward(flat, base, n, diagonal_stride, plan, keep=ctx.needs_input_grad[0])
        ctx.save_for_backward(flat, base, n)
        ctx.diagonal_stride, ctx.plan, ctx.kept = diagonal_stride, plan, kept
        return values

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:  # type: ignore[override]
        flat, base, n = ctx.saved_tensors
        grad_flat = _sweep_backward(flat, base, n, ctx.diagonal_stride, ctx.plan, ctx.kept, grad.contiguous())
        return grad_flat, None, None, None, None


class _Skew(torch.autograd.Function):
    """Copy a tensor into the skewed positions of a new flat tensor (the rest left unset: the
    sweep never reads it)."""

    @staticmethod
    def forward(ctx, values: Tensor, total: int, stride: tuple[int, ...]) -> Tensor:  # type: ignore[override]
        flat = values.new_empty(total)
        flat.as_strided(values.shape, stride).copy_(values)
        ctx.shape, ctx.stride = values.shape, stride
        return flat

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        return grad.as_strided(ctx.shape, ctx.stride), None, None


def _log_gak_sweep(flat: Tensor, base: Tensor, n: Tensor, m: Tensor, diagonal_stride: int) -> Tensor:
    """Unnormalised log GAK of a list of pairs whose skewed log-kernels lie in `flat`; pairs
    sorted by n + m, descending. Differentiable in `flat`."""
    plan = _Plan(n, m)
    if torch.is_grad_enabled() and flat.requires_grad:
        return _Sweep.apply(flat, base, n, diagonal_stride, plan)
    return _sweep_forward(flat, base, n, diagonal_stride, plan, keep=False)[0]


class _SequenceMajor:
    """Sequences sorted by length (shortest first), their valid slices concatenated in order.

    Sequence a owns rows starts[a] : starts[a] + lengths[a]. Shortest first means that from any
    sequence's start there are at least max(lengths) rows left, so a sweep reading up to the
    longest length from any start stays inside the matrix.
    """

    def __init__(self, x: Tensor, lengths: Tensor, modality: Tensor | None) -> None:
        self.order = torch.argsort(lengths, stable=True)
        self.lengths = lengths[self.order]
        self.max_len = int(self.lengths[-1])
        positions = torch.arange(x.shape[1], device=x.device)
        valid = positions.unsqueeze(0) < self.lengths.unsqueeze(1)
        # one gather of the valid rows (not a sorted copy of the padded batch, then a mask)
        rows = (self.order.unsqueeze(1) * x.shape[1] + positions)[valid]
        self.slices = x.reshape(-1, x.shape[-1])[rows]
        self.modality = None if modality is None else modality.reshape(-1)[rows]
        self.starts = torch.cumsum(self.lengths, 0) - self.lengths
        self.row_lengths = torch.repeat_interleave(self.lengths, self.lengths)


def _skewed_log_kernels(
    x: _SequenceMajor, y: _SequenceMajor, kernel: LocalKernel, sigma: float | None, delta: float | None
) -> Tensor:
    """The (Sx, Sy) local log-kernel matrix, skewed: entry (r, c) at (r + c) * Sx + r.

    Without autograd the matrix is built in row tiles straight into the skewed tensor (each
    tile's arithmetic stays in cache), and for a set against itself only the columns that the
    upper triangle of pairs can read are computed.
    """
    rows, cols = len(x.slices), len(y.slices)
    total, stride = (rows + cols - 1) * rows, (rows + 1, rows)

    def tile(r0: int, r1: int, c0: int) -> Tensor:
        phi = kernel.sqdist(
            x.slices[r0:r1],
            y.slices[c0:],
            None if x.modality is None else x.modality[r0:r1],
            None if y.modality is None else y.modality[c0:],
        )
        scale = _bandwidth_scale(
            sigma, delta, x.row_lengths[r0:r1].unsqueeze(1), y.row_lengths[c0:].unsqueeze(0), phi.dtype
        )
        return log_local_kernel(phi, scale)

    if torch.is_grad_enabled() and (x.slices.requires_grad or y.slices.requires_grad):
        return _Skew.apply(tile(0, rows, 0), total, stride)
    flat = x.slices.new_empty(total)
    skewed = flat.as_strided((rows, cols), stride)
    step = max(_TILE_MIN_ROWS, _TILE_ELEMENTS // cols)
    for r0 in range(0, rows, step):
        # pairs (a <= b) read row r only at columns past r - max_len (outside cells included)
        c0 = max(0, r0 - x.max_len + 1) if x is y else 0
        skewed[r0 : r0 + step, c0:].copy_(tile(r0, min(rows, r0 + step), c0))
    return flat


def _set_pairs(x: _SequenceMajor, y: _SequenceMajor) -> tuple[Tensor, Tensor]:
    """Every pair (a, b) of two sets in sorted positions; a <= b only when they are the same set."""
    rows, cols = len(x.order), len(y.order)
    device = x.lengths.device
    if x is y:
        a, b = torch.triu_indices(rows, cols, device=device)
        return a, b
    return torch.arange(rows, device=device).repeat_interleave(cols), torch.arange(cols, device=device).repeat(rows)


def _scatter_pairs(x: _SequenceMajor, y: _SequenceMajor, a: Tensor, b: Tensor, values: Tensor) -> Tensor:
    """The (rows, cols) matrix in the callers' order from the values of pairs (a, b)."""
    cols = len(y.order)
    positions = x.order[a] * cols + y.order[b]
    if x is y:  # K(y, x) = K(x, y); the diagonal is written once so its gradient counts once
        off = a != b
        positions = torch.cat([positions, (y.order[b] * cols + x.order[a])[off]])
        values = torch.cat([values, values[off]])
    return values.new_zeros(len(x.order) * cols).index_put((positions,), values).view(len(x.order), cols)


def _log_gak_block_compiled(
    x: _SequenceMajor, y: _SequenceMajor, kernel: LocalKernel, sigma: float | None, delta: float | None
) -> Tensor:
    """Unnormalised log GAK of every pair of two sets, in the callers' order, by the compiled
    CPU recursion (`sugar.gak_compiled`), which reads the squared distances; no autograd."""
    from sugar.gak_compiled import log_gak_pairs

    rows, cols = len(x.slices), len(y.slices)
    phi = torch.empty(rows, cols, dtype=x.slices.dtype)
    sequence_of_row = torch.repeat_interleave(torch.arange(len(x.lengths)), x.lengths.cpu())
    step = max(_TILE_MIN_ROWS, _TILE_ELEMENTS // max(1, cols))
    x_sq = x.slices.pow(2).sum(-1)
    y_sq = x_sq if x is y else y.slices.pow(2).sum(-1)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        # a set against itself needs only pairs a <= b: columns from the first row's sequence on
        c0 = int(x.starts[sequence_of_row[r0]]) if x is y else 0
        sqdist_into(
            kernel,
            phi[r0:r1, c0:],
            x.slices[r0:r1],
            y.slices[c0:],
            None if x.modality is None else x.modality[r0:r1],
            None if y.modality is None else y.modality[c0:],
            x_sq[r0:r1],
            y_sq[c0:],
        )
    a, b = _set_pairs(x, y)
    n, m = x.lengths[a], y.lengths[b]
    scales = torch.as_tensor(_bandwidth_scale(sigma, delta, n, m, torch.float64), dtype=torch.float64)
    values = log_gak_pairs(
        phi.numpy(),
        scales.expand(len(a)).contiguous().numpy(),
        x.starts.cpu().numpy(), x.lengths.cpu().numpy(),
        y.starts.cpu().numpy(), y.lengths.cpu().numpy(),
        a.cpu().numpy(), b.cpu().numpy(),
        threads=torch.get_num_threads(),
    )
    return _scatter_pairs(x, y, a, b, torch.from_numpy(values).to(device=x.slices.device, dtype=x.slices.dtype))




def _log_gak_block_sweep(
    x: _SequenceMajor, y: _SequenceMajor, kernel: LocalKernel, sigma: float | None, delta: float | None
) -> Tensor:
    """Unnormalised log GAK of every pair of two sets (one triangle if they are the same set),
    in the callers' order, by the wavefront engine."""
    flat = _skewed_log_kernels(x, y, kernel, sigma, delta)
    a, b = _set_pairs(x, y)
    order = torch.argsort(x.lengths[a] + y.lengths[b], descending=True, stable=True)
    a, b = a[order], b[order]
    base = (x.starts[a] + y.starts[b]) * len(x.slices) + x.starts[a]
    values = _log_gak_sweep(flat, base, x.lengths[a], y.lengths[b], len(x.slices))
    return _scatter_pairs(x, y, a, b, values)


def _log_gak_self_sweep(
    x: Tensor,
    lengths: Tensor,
    modality: Tensor | None,
    kernel: LocalKernel,
    sigma: float | None,
    delta: float | None,
) -> Tensor:
    """log K(x_b, x_b) for each sequence by the wavefront engine, each from its own (L, L) block."""
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_lengths = lengths[order]
    size = int(sorted_lengths[0])
    valid = torch.arange(size, device=x.device).unsqueeze(0) < sorted_lengths.unsqueeze(1)
    # padding may hold anything (NaN too); the sweep needs finite values in the cells it visits
    ordered = x[order, :size].masked_fill(~valid.unsqueeze(-1), 0.0)
    ordered_modality = None if modality is None else modality[order, :size]
    phi = kernel.sqdist(ordered, ordered, ordered_modality, ordered_modality)  # (B, L, L)
    scale = _bandwidth_scale(sigma, delta, sorted_lengths, sorted_lengths, x.dtype)
    log_k = log_local_kernel(phi, scale.view(-1, 1, 1) if isinstance(scale, Tensor) else scale)
    # each (L, L) block skewed on its own: (b, i, j) at b (2L - 1) L + (i + j) L + i
    block = (2 * size - 1) * size
    flat = _Skew.apply(log_k, len(order) * block, (block, size + 1, size))
    base = torch.arange(len(order), device=x.device) * block
    values = _log_gak_sweep(flat, base, sorted_lengths, sorted_lengths, size)
    return values[torch.argsort(order)]


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


def _slice_groups(lengths: list[int], budget: int) -> list[slice]:
    """Consecutive sequences grouped so each group holds about `budget` slices (at least one
    sequence): the wavefront engine's memory grows with slices x slices, not pairs x L^2."""
    groups: list[slice] = []
    start, total = 0, 0
    for index, length in enumerate(lengths):
        if total and total + length > budget:
            groups.append(slice(start, index))
            start, total = index, 0
        total += length
    groups.append(slice(start, len(lengths)))
    return groups


def _wavefront_blocks(
    x_lengths: Tensor, y_lengths: Tensor, element_size: int, with_grad: bool, chunk_bytes: int, symmetric: bool
) -> tuple[list[slice], list[slice]]:
    """Blocks of sequences whose local-kernel matrices (and sweep state) fit in about chunk_bytes."""
    # skewed kernels (twice the cells) + one tile; under autograd also the kernel's intermediates,
    # the kept diagonals and the gradients
    tensors_per_cell = 12 if with_grad else 3
    cells = max(1, chunk_bytes // (tensors_per_cell * element_size))
    x_list, y_list = x_lengths.tolist(), y_lengths.tolist()
    x_slices, y_slices = sum(x_list), sum(y_list)
    if x_slices * y_slices <= cells:
        return [slice(0, len(x_list))], [slice(0, len(y_list))]
    side = max(1, math.isqrt(cells))
    if symmetric:
        groups = _slice_groups(x_list, side)
        return groups, groups
    x_budget = min(x_slices, side)
    return _slice_groups(x_list, x_budget), _slice_groups(y_list, max(side, cells // x_budget))


def prefers_wavefront(max_n: int, max_m: int) -> bool:
    """Whether the wavefront engine beats the cell-by-cell one for these longest lengths.

    The cell engine takes n * m Python steps over large contiguous blocks; the wavefront takes
    n + m - 1 steps over gathered diagonals, visiting up to about twice the cells when lengths
    are mixed. Measured on two CPU cores: up to 16 x 16 cells the cell engine is as fast or
    faster (float32 most of all); beyond, the wavefront wins, by far on long sequences.
    """
    return max_n * max_m > WAVEFRONT_MIN_CELLS


WAVEFRONT_MIN_CELLS = 256
ENGINES = ("auto", "cells", "wavefront", "compiled")


def compiled_available() -> bool:
    """Whether the compiled CPU recursion (numba) can be used."""
    try:
        import sugar.gak_compiled  # noqa: F401
    except ImportError:
        return False
    return True


def choose_engine(max_n: int, max_m: int, device: torch.device, with_grad: bool) -> str:
    """The engine "auto" runs. Without autograd on a CPU the compiled recursion (its cost is the
    cells, not Python steps); otherwise the tensor engine `prefers_wavefront` picks."""
    if not with_grad and device.type == "cpu" and max_n * max_m > COMPILED_MIN_CELLS and compiled_available():
        return "compiled"
    return "wavefront" if prefers_wavefront(max_n, max_m) else "cells"


COMPILED_MIN_CELLS = 0


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
    engine: str = "auto",
) -> Tensor:
    """GAK between every sequence of x and every sequence of y: shape (B, B').

    x: padded (B, L, D) with lengths (B,); y likewise, or None for y = x (then only one
    triangle of pairs is computed). Exactly one of `sigma` (fixed, tslearn's convention) or
    `delta` (sigma = delta * sqrt((n + m) / 2) per pair). `kernel` gives the local squared
    distance (default squared Euclidean); a kernel with `needs_modality` (the Triple Kernel)
    reads `x_modality` / `y_modality`, (B, L) ids. `normalize` divides by sqrt(K(x,x) K(y,y))
    and clamps at 1; `log` returns log values. Differentiable in x and y. Each block of pairs
    uses about `chunk_bytes` of working memory. `engine`: "cells" (one step per cell (i, j)),
    "wavefront" (one step per anti-diagonal), "compiled" (the recursion compiled for the CPU,
    without autograd) or "auto" (`choose_engine`; the same values whichever runs).
    """
    kernel = kernel or SquaredEuclidean()
    _check_sequences(x, "x")
    _check_bandwidth(sigma, delta)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
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
    if engine == "compiled" and (with_grad or x.device.type != "cpu" or not compiled_available()):
        raise ValueError("engine='compiled' needs numba, a CPU tensor and no autograd")
    if engine == "auto":
        engine = choose_engine(int(x_lengths.max()), int(y_lengths.max()), x.device, with_grad)
    wavefront = engine in ("wavefront", "compiled")
    if wavefront:
        x_parts, y_parts = _wavefront_blocks(x_lengths, y_lengths, x.element_size(), with_grad, chunk_bytes, symmetric)
    else:
        block_rows, block_cols = _block_sizes(
            x.shape[0], y.shape[0], x.shape[1], y.shape[1], x.element_size(), with_grad, chunk_bytes
        )
        if symmetric:  # square blocks, so the upper triangle of blocks covers every pair
            block_rows = block_cols = min(block_rows, block_cols)
        x_parts = [slice(s, min(x.shape[0], s + block_rows)) for s in range(0, x.shape[0], block_rows)]
        y_parts = [slice(s, min(y.shape[0], s + block_cols)) for s in range(0, y.shape[0], block_cols)]

    def layout(z: Tensor, lengths: Tensor, modality: Tensor | None, part: slice) -> _Layout:
        return _Layout(z[part], lengths[part], None if modality is None else modality[part])

    def cell_block(x_part: slice, y_part: slice) -> Tensor:
        x_layout = layout(x, x_lengths, x_modality, x_part)
        y_layout = x_layout if symmetric and x_part == y_part else layout(y, y_lengths, y_modality, y_part)
        phi = kernel.sqdist(x_layout.slices, y_layout.slices, x_layout.modality, y_layout.modality)
        scale = _bandwidth_scale(
            sigma, delta, x_layout.row_lengths.unsqueeze(1), y_layout.row_lengths.unsqueeze(0), x.dtype
        )
        values = _log_gak_pairs(log_local_kernel(phi, scale), x_layout, y_layout)
        # back from sorted order to the callers' order
        return values[torch.argsort(x_layout.order)][:, torch.argsort(y_layout.order)]

    def wavefront_block(x_part: slice, y_part: slice) -> Tensor:
        def sequences(z: Tensor, lengths: Tensor, modality: Tensor | None, part: slice) -> _SequenceMajor:
            return _SequenceMajor(z[part], lengths[part], None if modality is None else modality[part])

        x_set = sequences(x, x_lengths, x_modality, x_part)
        y_set = x_set if symmetric and x_part == y_part else sequences(y, y_lengths, y_modality, y_part)
        if engine == "compiled":
            return _log_gak_block_compiled(x_set, y_set, kernel, sigma, delta)
        return _log_gak_block_sweep(x_set, y_set, kernel, sigma, delta)

    block = wavefront_block if wavefront else cell_block
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
        log_self = _log_gak_self_sweep if wavefront else _log_gak_self
        self_x = log_self(x, x_lengths, x_modality, kernel, sigma, delta)
        self_y = log_self(y, y_lengths, y_modality, kernel, sigma, delta)
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
