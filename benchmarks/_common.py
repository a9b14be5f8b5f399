"""Helpers shared by the benchmark scripts (not part of the package).

* :func:`print_header` prints the command line, the machine (cores, load
  average, memory) and the BLAS numpy uses (through ``threadpoolctl``), so a
  pasted table always says where it came from.
* :func:`time_call` times a callable after a warm-up and returns the median
  of several repeats (medians resist the spikes of a shared machine better
  than means; the minimum is kept too).
* :func:`one_pass_time` is the yardstick: the median time of one ``A.T @ r``
  on the very array a solver works on, measured in the same run.
* :func:`measure_memory` reports the peak memory a call adds on top of what
  existed before it, in two ways (see its docstring for why both).
* :func:`gradient_like` builds pruning-shaped matrices column block by column
  block, so the ResNet20-sized case (1000 x 268,336 float32, about 1.07 GB)
  never needs the float64 n x p temporaries of
  :func:`chita_opt.datasets.make_gradient_like`.
"""

from __future__ import annotations

import gc
import os
import platform
import shlex
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Memory",
    "Timing",
    "f1_score",
    "fmt",
    "gradient_like",
    "load_average",
    "machine_lines",
    "measure_memory",
    "one_pass_time",
    "print_header",
    "print_table",
    "profile_call",
    "threads_overhead",
    "time_call",
]


# ------------------------------------------------------------------ machine
def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. ``"6.2 7.4 5.9"`` (or ``"n/a"``)."""
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _cores() -> str:
    logical = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = logical
    return f"{usable} usable of {logical} logical"


def _memory_total() -> str:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return f"{vm.total / 2**30:.1f} GiB total, {vm.available / 2**30:.1f} GiB available"
    except ImportError:
        try:
            pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            return f"{pages / 2**30:.1f} GiB total"
        except (ValueError, OSError):
            return "n/a"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "n/a"


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    parts = []
    for info in threadpool_info():
        parts.append(
            f"{info.get('user_api')}:{info.get('internal_api')} {info.get('version')} "
            f"({info.get('num_threads')} threads, {info.get('architecture', '?')})"
        )
    return "; ".join(parts) or "none found"


def _versions(names: Sequence[str]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in names:
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def _git_revision() -> str:
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "chita_opt"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    if not rev:
        return "n/a"
    return rev + (" + uncommitted changes under chita_opt/" if dirty else "")


def machine_lines(packages: Sequence[str] = ()) -> list[str]:
    """Lines describing the command, machine, BLAS and package versions."""
    cmd = " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), *sys.argv])
    return [
        f"command : {cmd}",
        f"python  : {platform.python_version()} on {platform.platform()}",
        f"cpu     : {_cpu_model()}, {_cores()} cores",
        f"memory  : {_memory_total()}",
        f"load avg: {load_average()} (1/5/15 min) at {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"blas    : {_blas()}",
        f"packages: {_versions(['chita_opt', 'numpy', 'scipy', 'numba', *packages])}",
        f"revision: {_git_revision()}",
    ]


def threads_overhead(calls: int = 30) -> tuple[float, float] | None:
    """Seconds per enter/exit of a BLAS thread limit: fresh, and with a cached controller.

    ``solve(..., threads=1)`` enters ``threadpoolctl.threadpool_limits``, which
    inspects the loaded libraries on every call; on millisecond solves that
    cost is visible, so the scripts print it next to their timings.
    """
    try:
        from threadpoolctl import ThreadpoolController, threadpool_limits
    except ImportError:
        return None

    def fresh() -> None:
        with threadpool_limits(limits=1, user_api="blas"):
            pass

    controller = ThreadpoolController()

    def cached() -> None:
        with controller.limit(limits=1, user_api="blas"):
            pass

    return (time_call(fresh, repeats=calls).median, time_call(cached, repeats=calls).median)


def print_header(title: str, packages: Sequence[str] = ()) -> None:
    """Print ``title``, :func:`machine_lines` and the cost of a BLAS thread limit."""
    print(f"# {title}")
    for line in machine_lines(packages):
        print(f"# {line}")
    overhead = threads_overhead()
    if overhead is not None:
        print(f"# threads=1 overhead: {overhead[0] * 1e3:.2f} ms per threadpool_limits "
              f"enter/exit ({overhead[1] * 1e3:.2f} ms with a cached ThreadpoolController)")
    print(flush=True)


# ------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Median and minimum wall time of the timed repeats, and the last result."""

    median: float
    min: float
    times: list[float]
    result: Any


def time_call(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    The warm-up absorbs one-off costs (Numba compilation or cache loading,
    first-touch page faults) that a user pays once per process, not per solve.
    """
    for _ in range(warmup):
        fn()
    times = []
    result = None
    for _ in range(max(repeats, 1)):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return Timing(float(np.median(times)), float(np.min(times)), times, result)


def one_pass_time(A: np.ndarray, *, repeats: int = 7, threads: int | None = None) -> float:
    """Median time of one ``A.T @ r`` (``r`` in A's dtype), the honest yardstick.

    A full pass over ``A`` is memory-bound, so it sets the floor for any
    method that reads all of ``A``; solver times divided by it travel better
    between machines (and between quiet and busy moments) than seconds.
    """
    r = np.random.default_rng(0).standard_normal(A.shape[0]).astype(A.dtype)
    with _blas_limit(threads):
        return time_call(lambda: A.T @ r, repeats=repeats, warmup=1).median


class _blas_limit:
    """``threadpoolctl`` limit for BLAS when ``threads`` is given, else nothing."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self._ctx: Any = None

    def __enter__(self) -> None:
        if self.threads is not None:
            from threadpoolctl import threadpool_limits

            self._ctx = threadpool_limits(limits=self.threads, user_api="blas")
            self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


# ------------------------------------------------------------------- memory
@dataclass
class Memory:
    """Peak memory a call added on top of what existed before it, in bytes.

    ``traced``: peak of Python/numpy allocations (tracemalloc), exact but blind
    to memory allocated outside the Python allocator hooks (BLAS/LAPACK
    workspaces, Numba-allocated arrays). ``rss``: peak resident set size
    minus the RSS just before the call, sampled every ``interval`` seconds by
    a thread (sees everything, but can miss a spike shorter than the
    interval and under-counts memory the allocator reuses). ``None`` when the
    RSS cannot be read.
    """

    traced: int
    rss: int | None

    @property
    def peak(self) -> int:
        """The larger of the two estimates."""
        return max(self.traced, self.rss or 0)


def _rss_reader() -> Callable[[], int] | None:
    try:
        import psutil

        proc = psutil.Process()
        return lambda: int(proc.memory_info().rss)
    except ImportError:
        pass
    if os.path.exists("/proc/self/statm"):
        page = os.sysconf("SC_PAGE_SIZE")

        def read() -> int:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * page

        return read
    return None


def measure_memory(
    fn: Callable[[], Any], *, interval: float = 0.002, traced: bool = True
) -> tuple[Any, Memory]:
    """Call ``fn`` once and return ``(result, Memory)``.

    Both tracemalloc (numpy registers its buffers with it, so every numpy
    temporary is counted exactly) and an RSS sampler are used: tracemalloc
    cannot see BLAS workspaces or Numba's allocator, the sampler can but may
    miss short spikes. Timed runs are kept separate from traced runs because
    tracemalloc slows allocation-heavy code down; with ``traced=False`` only
    the sampler runs (its cost is negligible, so such a run can be timed),
    and ``Memory.traced`` is 0.
    """
    read_rss = _rss_reader()
    gc.collect()
    peak_rss = [0]
    stop = threading.Event()
    base_rss = read_rss() if read_rss else 0

    def sample() -> None:
        assert read_rss is not None
        while not stop.is_set():
            peak_rss[0] = max(peak_rss[0], read_rss())
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True) if read_rss else None
    if traced:
        tracemalloc.start()
    if sampler is not None:
        sampler.start()
    try:
        base_traced = tracemalloc.get_traced_memory()[0] if traced else 0
        result = fn()
        traced_peak = tracemalloc.get_traced_memory()[1] - base_traced if traced else 0
    finally:
        if traced:
            tracemalloc.stop()
        stop.set()
        if sampler is not None:
            sampler.join()
    if read_rss:
        peak_rss[0] = max(peak_rss[0], read_rss())
    rss = max(peak_rss[0] - base_rss, 0) if read_rss else None
    return result, Memory(int(traced_peak), rss)


# ------------------------------------------------------------------- output
def fmt(value: Any, spec: str = ".4g") -> str:
    """Format numbers compactly; ``None`` prints as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return format(float(value), spec)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain-text table in Markdown pipe syntax (pastes straight into docs)."""
    # a literal "|" (e.g. in "|w_bar|") would split a Markdown cell: escape it
    cells = [[fmt(v).replace("|", "\\|") for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |")
    print(flush=True)


# ------------------------------------------------------------------ metrics
def f1_score(found: np.ndarray, truth: np.ndarray) -> float:
    """F1 of a recovered support against the planted one: ``2 |S & T| / (|S| + |T|)``."""
    found = np.unique(np.asarray(found, dtype=np.int64))
    truth = np.unique(np.asarray(truth, dtype=np.int64))
    if found.size + truth.size == 0:
        return 1.0
    return 2.0 * np.intersect1d(found, truth).size / (found.size + truth.size)


# ---------------------------------------------------------------- problems
def gradient_like(
    n: int,
    p: int,
    *,
    rank: int = 8,
    scale_spread: float = 1.5,
    noise: float = 0.5,
    weight_df: float = 3.0,
    dtype: Any = np.float32,
    seed: int = 0,
    block: int = 16_384,
) -> tuple[np.ndarray, np.ndarray]:
    """Pruning-shaped ``(G, w_bar)``, the model of ``chita_opt.datasets.make_gradient_like``.

    ``G = (U V + noise E) * s`` with a shared rank-``rank`` part, isotropic
    noise, lognormal column scales (median 1) and Student-t weights scaled by
    0.05 -- the same law, drawn in column blocks of ``block`` so the only
    n x p array ever allocated is ``G`` itself in ``dtype`` (the datasets
    function works in float64 and needs several n x p float64 temporaries,
    over 6 GB at p = 268,336). Deterministic for a given ``seed``; the numbers
    differ from ``make_gradient_like``'s for the same seed.
    """
    rng = np.random.default_rng(seed)
    r = min(rank, n, p)
    U = rng.standard_normal((n, r))
    log_s = scale_spread * rng.standard_normal(p)
    scales = np.exp(log_s - np.median(log_s))
    w_bar = 0.05 * rng.standard_t(weight_df, size=p)
    G = np.empty((n, p), dtype=dtype)
    for start in range(0, p, block):
        stop = min(start + block, p)
        V = rng.standard_normal((r, stop - start)) / np.sqrt(r)
        part = U @ V
        part += noise * rng.standard_normal((n, stop - start))
        part *= scales[start:stop]
        G[:, start:stop] = part
    return G, w_bar


# ---------------------------------------------------------------- profiling
def profile_call(fn: Callable[[], Any], *, top: int = 12, sort: str = "tottime") -> None:
    """Run ``fn`` under cProfile and print the ``top`` functions by ``sort``.

    Numba kernels show as one opaque call each (their time is their own
    ``tottime``); BLAS calls show as the numpy function that made them.
    """
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    # drop pstats' preamble up to the column header
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    for ln in lines[start:]:
        print("    " + ln)
    print(flush=True)
