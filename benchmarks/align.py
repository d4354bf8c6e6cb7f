"""Alignment-core benchmark: `gak_matrix` against tslearn's `cdist_gak` and the GEMM floor.

    python benchmarks/align.py                 # B = 256 (with tslearn), long sequences, B = 2048
    python benchmarks/align.py --skip-large    # without B = 2048
    python benchmarks/align.py --skip-long     # without the long-sequence cases
    python benchmarks/align.py --device cuda   # same benchmark on a GPU (tslearn stays on CPU)

The floor is one GEMM of all valid slices against all valid slices (S x D times D x S): an
all-pairs alignment must at least compare every slice with every slice. Prints times, the ratios
the project tracks (speed-up over tslearn, multiple of the floor) and peak memory.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import torch

from sugar.align import choose_engine, gak_matrix


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


class PeakMemory:
    """Peak resident memory (CPU, sampled) or peak allocated memory (CUDA) during a block."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.005)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes())
        self.extra = self.peak - self._base


def best_time(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def make_batch(batch: int, max_len: int, dim: int, seed: int, dtype: torch.dtype, device: torch.device):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (batch,), generator=generator)
    x = torch.randn(batch, max_len, dim, generator=generator, dtype=torch.float64)
    x = torch.nn.functional.normalize(x, dim=-1)  # unit slices, like teacher features
    return x.to(device=device, dtype=dtype), lengths.to(device)


def floor_gemm(x: torch.Tensor, lengths: torch.Tensor) -> Callable[[], object]:
    mask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
    packed = x[mask]
    return lambda: packed @ packed.T


def small_case(device: torch.device, sigma: float, repeats: int) -> None:
    batch, max_len, dim = 256, 8, 768
    print(f"== B = {batch}, lengths uniform in 1..{max_len}, D = {dim}, sigma = {sigma}, device = {device}")
    x64, lengths = make_batch(batch, max_len, dim, 0, torch.float64, device)
    slices = int(lengths.sum())
    print(f"slices S = {slices}, pairs = {batch * batch}")

    from tslearn.metrics import cdist_gak
    from tslearn.utils import to_time_series_dataset

    dataset = to_time_series_dataset([x64[i, : lengths[i]].cpu().numpy() for i in range(batch)])
    cdist_gak(dataset[:4], sigma=sigma)  # numba compilation outside the timing
    start = time.perf_counter()
    reference = cdist_gak(dataset, sigma=sigma)
    tslearn_time = time.perf_counter() - start

    ours = gak_matrix(x64, lengths, sigma=sigma)
    error = (ours.cpu() - torch.from_numpy(reference)).abs().max().item()
    rows = [("tslearn cdist_gak (float64, 1 job)", tslearn_time)]
    auto = choose_engine(max_len, max_len, device, with_grad=False)
    for dtype in (torch.float64, torch.float32):
        x = x64.to(dtype)
        name = str(dtype).removeprefix("torch.")
        with torch.no_grad():
            gak_time = best_time(lambda: gak_matrix(x, lengths, sigma=sigma), device, repeats)
            floor_time = best_time(floor_gemm(x, lengths), device, repeats)
            others = {
                engine: best_time(lambda: gak_matrix(x, lengths, sigma=sigma, engine=engine), device, repeats)
                for engine in engines(device)
                if engine != auto
            }
        rows.append((f"gak_matrix ({name}, auto: {auto})", gak_time))
        rows += [(f"gak_matrix ({name}, {engine})", seconds) for engine, seconds in others.items()]
        rows.append((f"floor GEMM S x D x S ({name})", floor_time))
        print_rows(rows)
        rows = []
        print(f"  speed-up over tslearn: {tslearn_time / gak_time:8.1f}x   multiple of floor: {gak_time / floor_time:6.2f}x")
    print(f"max |gak_matrix - cdist_gak| (float64) = {error:.2e}")


def large_case(device: torch.device, sigma: float, repeats: int) -> None:
    batch, max_len, dim = 2048, 16, 1536
    print(f"== B = {batch}, L = {max_len} (lengths uniform in 1..{max_len}), D = {dim}, float32, device = {device}")
    x, lengths = make_batch(batch, max_len, dim, 1, torch.float32, device)
    print(f"slices S = {int(lengths.sum())}, pairs = {batch * batch} (symmetric: upper triangle computed)")
    with torch.no_grad():
        with PeakMemory(device) as memory:
            gak_time = best_time(lambda: gak_matrix(x, lengths, sigma=sigma), device, repeats)
        floor_time = best_time(floor_gemm(x, lengths), device, repeats)
        x_full = torch.full_like(lengths, max_len)
        full_time = best_time(lambda: gak_matrix(x, x_full, sigma=sigma), device, 1)
    print_rows([("gak_matrix", gak_time), ("floor GEMM S x D x S", floor_time), ("gak_matrix, all lengths 16", full_time)])
    print(f"  multiple of floor: {gak_time / floor_time:.2f}x")
    print(f"  peak memory during gak_matrix (above the inputs): {memory.extra / 2**30:.2f} GiB")


def long_cases(device: torch.device, sigma: float, repeats: int) -> None:
    """Long sequences, where the engine choice matters: tslearn against both dtypes, then the
    backward pass of the largest case."""
    from tslearn.metrics import cdist_gak
    from tslearn.utils import to_time_series_dataset

    cases = [(16, 64, 64), (16, 256, 64), (256, 32, 768)]
    print(f"== long sequences: lengths uniform in 1..L, sigma = {sigma}, device = {device}")
    print(f"  {'B, max L, D':<14s} {'tslearn':>10s} {'float64':>10s} {'ratio':>8s} {'float32':>10s} {'ratio':>8s}  engine")
    for seed, (batch, max_len, dim) in enumerate(cases, start=2):
        x64, lengths = make_batch(batch, max_len, dim, seed, torch.float64, device)
        dataset = to_time_series_dataset([x64[i, : lengths[i]].cpu().numpy() for i in range(batch)])
        cdist_gak(dataset[:2], sigma=sigma)  # numba compilation outside the timing
        start = time.perf_counter()
        reference = cdist_gak(dataset, sigma=sigma)
        tslearn_time = time.perf_counter() - start
        times = []
        for dtype in (torch.float64, torch.float32):
            x = x64.to(dtype)
            with torch.no_grad():
                times.append(best_time(lambda: gak_matrix(x, lengths, sigma=sigma), device, repeats))
        with torch.no_grad():
            sweep_time = best_time(lambda: gak_matrix(x64, lengths, sigma=sigma, engine="wavefront"), device, repeats)
        with torch.no_grad():
            error = (gak_matrix(x64, lengths, sigma=sigma).cpu() - torch.from_numpy(reference)).abs().max().item()
        engine = choose_engine(int(lengths.max()), int(lengths.max()), device, with_grad=False)
        print(
            f"  {f'{batch}, {max_len}, {dim}':<14s} {tslearn_time * 1e3:8.1f}ms {times[0] * 1e3:8.1f}ms "
            f"{tslearn_time / times[0]:7.1f}x {times[1] * 1e3:8.1f}ms {tslearn_time / times[1]:7.1f}x  {engine}"
            f"  (max |diff| {error:.1e}; tensor wavefront float64 {sweep_time * 1e3:.1f}ms, "
            f"{tslearn_time / sweep_time:.1f}x)"
        )
    batch, max_len, dim = cases[-1]
    for dtype in (torch.float64, torch.float32):
        x, lengths = make_batch(batch, max_len, dim, len(cases) + 1, dtype, device)
        x.requires_grad_(True)
        values = gak_matrix(x, lengths, sigma=sigma)
        start = time.perf_counter()
        values.sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        backward_time = time.perf_counter() - start
        name = str(dtype).removeprefix("torch.")
        print(f"  backward pass, B = {batch}, L <= {max_len}, D = {dim}, {name}: {backward_time * 1e3:.1f} ms")


def engines(device: torch.device) -> list[str]:
    from sugar.align import compiled_available

    return ["cells", "wavefront"] + (["compiled"] if device.type == "cpu" and compiled_available() else [])


def print_rows(rows: list[tuple[str, float]]) -> None:
    for name, seconds in rows:
        print(f"  {name:<40s} {seconds * 1e3:10.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-long", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    small_case(device, args.sigma, args.repeats)
    if not args.skip_long:
        long_cases(device, args.sigma, args.repeats)
    if not args.skip_large:
        large_case(device, args.sigma, 1)


if __name__ == "__main__":
    main()
