"""Timing of one training step, shared by ``benchmarks/`` and the chapters' speed sections.

A *step factory* returns a zero-argument function that runs one full training step (forward,
backward, update) of an output layer; :func:`time_step` times it, :func:`peak_memory_mb` measures
its memory. Ratios are always measured side by side in one process, never against stored numbers.

    from lossbook.lab.benchmark import output_layer_step, time_step
    ms = 1e3 * time_step(output_layer_step("factored", D=100_000, d=128, m=128))
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = [
    "OUTPUT_LAYER_METHODS",
    "count_flops",
    "matmul_step",
    "output_layer_step",
    "peak_memory_mb",
    "round_ratios",
    "save_results",
    "sync",
    "time_interleaved",
    "time_step",
    "vm_hwm_kb",
]

#: What :func:`output_layer_step` can build. ``softmax``: nn.Linear + F.cross_entropy + SGD;
#: ``dense_z``: nn.Linear + the dense Z-loss + SGD; ``adaptive_zipf`` / ``adaptive_uniform``:
#: nn.AdaptiveLogSoftmaxWithLoss + SGD with Zipfian or uniform targets; ``hierarchical_zipf`` /
#: ``hierarchical_uniform``: HierarchicalSoftmax (√D clusters cut by Zipfian class counts, sparse
#: gradients) + SGD with Zipfian or uniform targets; ``factored``: FactoredSphericalLayer("z_loss")
#: with its exact step. The adaptive and hierarchical layers are built for Zipfian classes (the
#: former's cutoffs put the frequent classes in its head, the latter's clusters are of equal Zipf
#: mass); the uniform targets show them where that assumption fails.
OUTPUT_LAYER_METHODS = ("softmax", "dense_z", "adaptive_zipf", "adaptive_uniform", "hierarchical_zipf",
                        "hierarchical_uniform", "factored")


def _zipf_weights(D: int) -> torch.Tensor:
    return 1.0 / torch.arange(1, D + 1, dtype=torch.float64)


def _zipf_targets(m: int, D: int, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(_zipf_weights(D), m, replacement=True, generator=generator)


def output_layer_step(method: str, D: int, d: int, m: int, device="cpu", *, lr: float = 0.01,
                      seed: int = 0) -> Callable[[], None]:
    """A zero-argument function doing one training step of an output layer with D classes, hidden
    size d and a batch of m random hidden states (the network below is left out)."""
    from ..softmax import HierarchicalSoftmax
    from ..spherical import FactoredSphericalLayer, z_loss

    if method not in OUTPUT_LAYER_METHODS:
        raise ValueError(f"output_layer_step: method must be one of {OUTPUT_LAYER_METHODS}; got {method!r}.")
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(m, d, generator=g).to(device).requires_grad_(True)
    uniform = torch.randint(0, D, (m,), generator=g).to(device)
    if method in ("softmax", "dense_z"):
        lin = torch.nn.Linear(d, D, device=device)
        opt = torch.optim.SGD(lin.parameters(), lr=lr)
        loss_fn = F.cross_entropy if method == "softmax" else z_loss

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            h.grad = None
            loss_fn(lin(h), uniform).backward()
            opt.step()

        return step
    if method.startswith(("adaptive", "hierarchical")):
        if method.startswith("adaptive"):
            cutoffs = [c for c in (2_000, 20_000, 200_000) if c < D]
            model = torch.nn.AdaptiveLogSoftmaxWithLoss(d, D, cutoffs=cutoffs, div_value=4.0).to(device)

            def loss_of(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return model(h, y).loss
        else:
            model = HierarchicalSoftmax(d, D, class_counts=_zipf_weights(D), device=device)
            loss_of = model
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        y = _zipf_targets(m, D, g).to(device) if method.endswith("_zipf") else uniform

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            h.grad = None
            loss_of(h, y).backward()
            opt.step()

        return step
    layer = FactoredSphericalLayer(d, D, loss="z_loss", device=device)

    def step() -> None:
        h.grad = None
        layer(h, uniform).backward()
        layer.step(lr)

    return step


def sync(device) -> None:
    """Wait for queued GPU work (a no-op on CPU), so that wall-clock times mean something."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_step(step: Callable[[], None], device="cpu", *, min_time: float = 1.0, max_reps: int = 200,
              warmup: int = 1) -> float:
    """Seconds per call of ``step``: ``warmup`` untimed calls, then timed calls until ``min_time``
    seconds or ``max_reps`` calls have passed. Returns the median call, which a burst of other work
    on a shared machine moves less than the mean."""
    for _ in range(warmup):
        step()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start >= min_time or len(times) >= max_reps:
            return statistics.median(times)


def time_interleaved(steps: dict[str, Callable[[], None]], device="cpu", *, rounds: int = 5,
                     min_time: float = 1.0, max_reps: int = 200,
                     threads: dict[str, int] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each step, measured in ``rounds`` alternating blocks (A, B, …, A, B, …),
    so that a ratio of two steps compares them under the same machine load: on a shared machine
    the speed drifts over seconds, which separate timings would book as a difference between the
    methods. Each block lasts ``min_time / rounds`` seconds (at least one call); ``threads`` sets
    torch's thread count for a method's blocks. Returns, per method, the median call of each
    round; a ratio is best taken round by round (see :func:`round_ratios`)."""
    if rounds < 1:
        raise ValueError(f"time_interleaved: rounds must be ≥ 1; got {rounds}.")
    threads = threads or {}
    default = torch.get_num_threads()
    out: dict[str, list[float]] = {k: [] for k in steps}
    try:
        for r in range(rounds):
            for name, step in steps.items():
                torch.set_num_threads(threads.get(name, default))
                out[name].append(time_step(step, device, min_time=min_time / rounds,
                                           max_reps=max(1, max_reps // rounds), warmup=int(r == 0)))
    finally:
        torch.set_num_threads(default)
    return out


def round_ratios(times: dict[str, list[float]], num: str, den: str) -> list[float]:
    """times[num][r] / times[den][r] for each round r of :func:`time_interleaved`."""
    return [a / b for a, b in zip(times[num], times[den], strict=True)]


def vm_hwm_kb() -> int:
    """This process's peak resident memory (VmHWM, Linux). Unlike ru_maxrss it starts afresh at exec,
    so a child process does not inherit its parent's high-water mark."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def peak_memory_mb(factory: str, *args, device="cpu", **kwargs) -> float:
    """Peak memory of two steps of ``factory(*args, device=device, **kwargs)``, in MiB.

    ``factory`` is a "module:function" path (e.g. ``"lossbook.lab.benchmark:output_layer_step"``) so
    that on CPU the steps can run in a fresh process: the number is that process's peak resident
    memory minus that of a process that only imported the module. On CUDA it is
    ``torch.cuda.max_memory_allocated`` in this process.
    """
    module, _, name = factory.partition(":")
    if torch.device(device).type == "cuda":
        import importlib

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        step = getattr(importlib.import_module(module), name)(*args, device=device, **kwargs)
        step()
        step()
        sync(device)
        return torch.cuda.max_memory_allocated() / 2**20
    root = str(Path(__file__).resolve().parents[2])
    prelude = (f"import sys; sys.path.insert(0, {root!r}); import torch; torch.set_num_threads(1); "
               f"import {module} as _m; from lossbook.lab.benchmark import vm_hwm_kb;")
    code = prelude + f"s = _m.{name}(*{args!r}, device={str(device)!r}, **{kwargs!r}); s(); s(); print(vm_hwm_kb())"

    def run(c: str) -> int:
        return int(subprocess.run([sys.executable, "-c", c], capture_output=True, text=True, check=True).stdout)

    return (run(code) - run(prelude + "print(vm_hwm_kb())")) / 1024


def save_results(out_dir: str | Path, name: str, device, lines: list[str], rows: list[dict]) -> Path:
    """Write a benchmark's printed ``lines`` to ``<out_dir>/<name>_<device type>.txt`` and its ``rows``,
    with the machine (device, GPU, torch, threads, CPU), to the ``.json`` beside it; returns the stem."""
    device = torch.device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{name}_{device.type}"
    stem.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    stem.with_suffix(".json").write_text(json.dumps(
        {"device": str(device), "gpu": gpu, "torch": torch.__version__, "threads": torch.get_num_threads(),
         "cpu": platform.processor() or platform.machine(), "rows": rows}, indent=1))
    print(f"\nwrote {stem.with_suffix('.txt')} and .json")
    return stem


def machine_line(device) -> str:
    """``device=cpu torch=… threads=… cpu=…`` (with the GPU's name on CUDA): a benchmark's first line."""
    device = torch.device(device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return (f"device={device} {gpu} torch={torch.__version__} threads={torch.get_num_threads()} "
            f"cpu={platform.processor() or platform.machine()}")


class Log(list):
    """The lines a benchmark prints, kept for :func:`save_results`: ``log.say(text)`` prints and keeps."""

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.append(text)


def count_flops(step: Callable[[], None]) -> dict[str, int]:
    """The floating-point operations of one call of ``step``, counted from the shapes of its matrix
    products by ``torch.utils.flop_counter`` (mm, addmm, bmm, …: 2 per multiply-add; elementwise
    work, factorisations and inverses are not counted). Returns ``{"total": …, "<op>": …}``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    per_op = {str(op).removeprefix("aten."): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return {"total": int(counter.get_total_flops()), **per_op}


def matmul_step(n: int, device="cpu", *, dtype: torch.dtype | None = None, k: int | None = None,
                m: int | None = None, seed: int = 0) -> tuple[Callable[[], None], int]:
    """A plain matrix product (m×k)·(k×n), by default n×n by n×n, as a zero-argument step, and its
    flop count 2·m·k·n: the rate this machine reaches on one dense product of that size, to set
    beside a step whose flops :func:`count_flops` counted."""
    m, k = m or n, k or n
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, k, generator=g, dtype=dtype).to(device)
    b = torch.randn(k, n, generator=g, dtype=dtype).to(device)
    out = torch.empty(m, n, dtype=a.dtype, device=device)

    def step() -> None:
        torch.mm(a, b, out=out)

    return step, 2 * m * k * n
