"""The GAK recursion compiled for the CPU (numba): one pair per thread, row by row.

On a CPU the wavefront sweep of `sugar.align` is bound by the cost of launching a few tensor
operations per anti-diagonal, not by arithmetic. Compiled, the same recursion is a few
nanoseconds per cell, so here each pair runs on plain values, row by row:

    M[i, j] = k(x_i, y_j) * (M[i-1, j] + M[i, j-1] + M[i-1, j-1])

Every row is divided by its largest cell and the scales are summed in log space, so nothing
overflows. Exactness is checked, not assumed: a pair with a cell below `FLOOR` before rescaling
or a local kernel that may be below e^-700 (a path weight outside float64's normal range: tiny
sigma, very long sequences) is computed again in log space, cell by cell. The local kernel is
computed here from the squared distances, so the tensor side is one matrix product.

Only the forward values: autograd stays with the tensor engines of `sugar.align`.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

# Cells of a row before rescaling are at most 2m (the row above was scaled to at most 1), so a
# cell above FLOOR is a normal float64 with room to spare, and so is every product after it.
FLOOR = 2.0**-1000
MAX_T = 699.0


@njit(cache=True, nogil=True)
def _log_kernel(phi: float, scale: float) -> float:
    """log k for k = kappa / (2 - kappa), kappa = exp(-phi * scale): as `sugar.align.log_local_kernel`."""
    t = phi * scale
    return -t - math.log1p(-math.expm1(-t))


@njit(cache=True, nogil=True)
def _log_pair(phi: np.ndarray, scale: float, r0: int, n: int, c0: int, m: int) -> float:
    """log M[n-1, m-1] in log space: slower, exact for any kernel values."""
    neg_inf = -np.inf
    prev = np.full(m + 1, neg_inf)
    cur = np.full(m + 1, neg_inf)
    prev[0] = 0.0  # the corner M[-1, -1] = 1
    for i in range(n):
        cur[0] = neg_inf
        for j in range(m):
            a, b, c = prev[j + 1], cur[j], prev[j]
            top = max(a, max(b, c))
            if top == neg_inf:
                cur[j + 1] = neg_inf
            else:
                total = math.exp(a - top) + math.exp(b - top) + math.exp(c - top)
                cur[j + 1] = _log_kernel(phi[r0 + i, c0 + j], scale) + top + math.log(total)
        prev, cur = cur, prev
        prev[0] = neg_inf
    return prev[m]


@njit(cache=True, nogil=True)
def _pair(
    phi: np.ndarray, scale: float, r0: int, n: int, c0: int, m: int, prev: np.ndarray, cur: np.ndarray
) -> float:
    """log M[n-1, m-1] on rescaled plain values, or in log space where they would leave range.
    `prev` and `cur` are work rows of at least m + 1 cells (reused across pairs: short pairs
    are many, and an allocation costs as much as their cells)."""
    prev[: m + 1] = 0.0
    prev[0] = 1.0  # the corner M[-1, -1]
    log_scale = 0.0
    for i in range(n):
        cur[0] = 0.0
        row = r0 + i
        best = 0.0
        lowest = np.inf
        largest_t = 0.0
        for j in range(m):
            t = phi[row, c0 + j] * scale
            e = math.exp(-t)
            value = (prev[j + 1] + cur[j] + prev[j]) * (e / (2.0 - e))
            cur[j + 1] = value
            best = max(best, value)
            lowest = min(lowest, value)
            largest_t = max(largest_t, t)
        # log k >= -t - log 2: below MAX_T every local kernel is a normal float64
        if lowest < FLOOR or largest_t > MAX_T:
            return _log_pair(phi, scale, r0, n, c0, m)
        inverse = 1.0 / best
        for j in range(1, m + 1):
            cur[j] *= inverse
        log_scale += math.log(best)
        prev, cur = cur, prev
        prev[0] = 0.0
    return math.log(prev[m]) + log_scale


@njit(cache=True, nogil=True)
def _pairs_strided(
    phi: np.ndarray,
    scales: np.ndarray,
    x_starts: np.ndarray,
    x_lengths: np.ndarray,
    y_starts: np.ndarray,
    y_lengths: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    out: np.ndarray,
    offset: int,
    stride: int,
) -> None:
    width = 1 + (y_lengths.max() if y_lengths.shape[0] else 0)
    prev, cur = np.zeros(width), np.zeros(width)
    for t in range(offset, first.shape[0], stride):
        a, b = first[t], second[t]
        out[t] = _pair(phi, scales[t], x_starts[a], x_lengths[a], y_starts[b], y_lengths[b], prev, cur)


def log_gak_pairs(
    phi: np.ndarray,
    scales: np.ndarray,
    x_starts: np.ndarray,
    x_lengths: np.ndarray,
    y_starts: np.ndarray,
    y_lengths: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    threads: int = 1,
) -> np.ndarray:
    """Unnormalised log GAK of pairs (first[t], second[t]) with bandwidth factors scales[t]
    (1 / (2 sigma^2)): sequence a owns rows x_starts[a] : x_starts[a] + x_lengths[a] of the
    (Sx, Sy) squared-distance matrix `phi`, sequence b the columns y_starts[b] : + y_lengths[b].

    `threads` Python threads share the pairs (interleaved, so long and short pairs mix); the
    compiled code releases the GIL. Plain threads rather than numba's parallel layer, whose
    OpenMP flavour does not survive a fork (data-loader workers)."""
    out = np.empty(first.shape[0])
    args = (phi, scales, x_starts, x_lengths, y_starts, y_lengths, first, second, out)
    threads = max(1, min(threads, first.shape[0]))
    if threads == 1:
        _pairs_strided(*args, 0, 1)
        return out
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for job in [pool.submit(_pairs_strided, *args, offset, threads) for offset in range(threads)]:
            job.result()
    return out
