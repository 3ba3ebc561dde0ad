r"""The factored spherical output layer, model-parallel over a ``torch.distributed`` process group.

:class:`DistributedFactoredSphericalLayer` is :class:`~lossbook.FactoredSphericalLayer` with the D
rows of V sharded across the P ranks of a process group, so that the D×d matrix that dominates the
memory (D = 10⁸ classes at d = 512 is 200 GB in float32) is split P ways, while training stays
exact: every rank computes the same W = V·U + 1ωᵀ update as the single-process layer would.

Sharding rule: contiguous ranges. Rank r owns the classes [⌊rD/P⌋, ⌊(r+1)D/P⌋)
(:func:`shard_bounds`); every shard has ⌊D/P⌋ or ⌈D/P⌉ rows.

What is replicated: the d×d state (U, U^{-T}, Q = WᵀW, w̄ = Wᵀ1, ω), identical on every rank,
and the batch: **every rank calls forward with the same hidden states and targets** (the network
below is replicated, or data-parallel with its outputs all-gathered before this layer) and gets the
same loss and the same ∂L/∂h back.

What is communicated: a spherical loss sees W only through a = W[c]·h, Q and w̄; of these only the
target rows W[c] live on one rank. The forward pass therefore all-reduces one m×d matrix (each rank
fills the rows of the targets it owns, the others are exact zeros, so the sum is exact and
identical everywhere). Everything else — the loss's partials, ∂L/∂h, the m×m Gram GᵀG, the
updates of U, U^{-T}, ω, Q and w̄, the conditioning guard — is computed by every rank from
replicated inputs by the same arithmetic, so the replicas stay identical without further
messages, and each rank writes the sparse row updates of the targets it owns. A step thus sends
m·d numbers (one all-reduce), O(m·d), independent of D; folds of U into V are local (each rank folds
its rows); a re-inversion or fold decision all-reduces U's condition number (one number) so that
every rank takes the same branch. Construction all-reduces WᵀW and Wᵀ1 (d² + d numbers). ``comm``
counts what the collectives carry (:class:`CommCounter`).

Evaluation: :meth:`~DistributedFactoredSphericalLayer.topk` takes each rank's local top-k and
all-gathers m·k values and indices (then merges); :meth:`~DistributedFactoredSphericalLayer.scores`
and :meth:`~DistributedFactoredSphericalLayer.dense_weight` all-gather the full m×D scores or D×d
weight (for tests and small D), or return the local shard with ``local=True``.

Launch, CPU (gloo) or GPUs (NCCL, one process per GPU), with ``torchrun``::

    torchrun --standalone --nproc_per_node=4 train.py                     # one machine, 4 GPUs
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d \
             --rdzv_endpoint=HOST:29500 train.py                          # 2 machines × 8 GPUs

and in ``train.py``::

    import os, torch, torch.distributed as dist
    from lossbook.spherical.distributed import DistributedFactoredSphericalLayer

    dist.init_process_group("nccl")                       # "gloo" on CPU
    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)
    layer = DistributedFactoredSphericalLayer(512, 100_000_000, loss="z_loss",
                                              device=f"cuda:{local_rank}",
                                              generator=torch.Generator(f"cuda:{local_rank}").manual_seed(local_rank))
    loss = layer(hidden, target)      # the same (hidden, target) on every rank
    loss.backward()
    layer.step(lr=0.01)

The ranks' arithmetic on the d×d state must be deterministic for the replicas to stay bitwise
identical (it is on CPU and on identical GPUs with torch's default kernels);
:meth:`~DistributedFactoredSphericalLayer.replica_spread` measures the replicas' largest
difference and :meth:`~DistributedFactoredSphericalLayer.broadcast_state` copies rank 0's state to
all. :func:`launch_local` spawns P local gloo processes (tests, benchmarks).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .layer import F64, FactoredSphericalLayer

__all__ = ["CommCounter", "DistributedFactoredSphericalLayer", "launch_local", "shard_bounds"]


def shard_bounds(num_classes: int, world_size: int) -> list[int]:
    """The class ranges of the shards: rank r owns [bounds[r], bounds[r + 1]), bounds[r] = ⌊r·D/P⌋."""
    if not isinstance(num_classes, int) or not isinstance(world_size, int) or world_size < 1 or num_classes < world_size:
        raise ValueError(f"shard_bounds: need ints num_classes ≥ world_size ≥ 1; got num_classes={num_classes!r}, "
                         f"world_size={world_size!r}. Use fewer ranks than classes.")
    return [num_classes * r // world_size for r in range(world_size + 1)]


@dataclass
class CommCounter:
    """What a rank's collectives carried since the counter was made or :meth:`reset`.

    ``payload_bytes``: the bytes of the tensors handed to the collectives (an all-reduce of an
    m×d float64 matrix counts m·d·8). ``sent_bytes``: the bytes this rank sends with ring
    algorithms (NCCL's and gloo's for large messages): 2(P−1)/P of the payload for an all-reduce,
    (P−1)× the local input for an all-gather. ``calls``: the number of collectives.
    """

    calls: int = 0
    payload_bytes: int = 0
    sent_bytes: float = 0.0

    def reset(self) -> None:
        self.calls, self.payload_bytes, self.sent_bytes = 0, 0, 0.0

    def snapshot(self) -> dict[str, float]:
        return {"calls": self.calls, "payload_bytes": self.payload_bytes, "sent_bytes": self.sent_bytes}


class DistributedFactoredSphericalLayer(FactoredSphericalLayer):
    """:class:`~lossbook.FactoredSphericalLayer` with V's rows sharded over a process group (see
    the module docstring): the same ``forward``, ``step``, ``topk``, ``scores`` and
    ``dense_weight``, the same exact SGD on W, with V holding only this rank's classes.

    Args:
        in_features, num_classes: as for :class:`~lossbook.FactoredSphericalLayer` (D is the total).
        group: the process group (default: the world group); ``torch.distributed`` must be
            initialised (``dist.init_process_group``), and every rank of the group must build the
            layer with the same arguments.
        generator: draws this rank's shard of V; seed it differently on each rank (e.g. with the
            rank), or start from a given W with :meth:`from_dense` or :meth:`from_layer`.
        **kwargs: every other argument of :class:`~lossbook.FactoredSphericalLayer`.

    Attributes: ``rank``, ``world_size``, ``bounds`` (:func:`shard_bounds`), ``lo`` and ``hi``
    (this rank's class range), ``comm`` (:class:`CommCounter`).
    """

    def __init__(self, in_features: int, num_classes: int, *, group: Any = None, **kwargs: Any) -> None:
        name = "DistributedFactoredSphericalLayer"
        if not dist.is_available() or not dist.is_initialized():
            raise ValueError(f"{name}: torch.distributed is not initialised; call "
                             f"torch.distributed.init_process_group('gloo' or 'nccl') on every rank first "
                             f"(torchrun sets the environment), or use FactoredSphericalLayer in one process.")
        if group is not None and not isinstance(group, dist.ProcessGroup):
            raise TypeError(f"{name}: group must be a torch.distributed.ProcessGroup or None (the world); "
                            f"got {type(group).__name__}.")
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        if rank < 0:
            raise ValueError(f"{name}: this process is not a member of the group; build the layer only on its ranks.")
        if not isinstance(num_classes, int) or num_classes < max(2, world):
            raise ValueError(f"{name}: num_classes must be an int ≥ max(2, world size = {world}); got "
                             f"{num_classes!r}. Use fewer ranks, or the single-process layer.")
        # set before the base constructor, which sizes V by _shard_rows and all-reduces its Gram
        object.__setattr__(self, "group", group)
        object.__setattr__(self, "rank", rank)
        object.__setattr__(self, "world_size", world)
        object.__setattr__(self, "bounds", shard_bounds(num_classes, world))
        object.__setattr__(self, "lo", self.bounds[rank])
        object.__setattr__(self, "hi", self.bounds[rank + 1])
        object.__setattr__(self, "comm", CommCounter())
        super().__init__(in_features, num_classes, **kwargs)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dense(cls, weight: Tensor, bias: Tensor | None = None, *, group: Any = None,
                   **kwargs: Any) -> DistributedFactoredSphericalLayer:
        """A layer whose W equals ``weight`` (D×in) and ``bias`` (D,): every rank passes the same
        full matrices and keeps its rows [lo, hi) of them."""
        D, n_in = weight.shape
        layer = cls(n_in, D, group=group, bias=bias is not None, dtype=weight.dtype, device=weight.device, **kwargs)
        full = weight if bias is None else torch.cat([weight, bias[:, None]], dim=1)
        with torch.no_grad():
            layer.V.copy_(full[layer.lo : layer.hi])
        layer.resync()
        return layer

    @classmethod
    def from_layer(cls, layer: FactoredSphericalLayer, *, group: Any = None) -> DistributedFactoredSphericalLayer:
        """The model-parallel twin of a single-process layer, in its exact state (V's rows of
        this rank, U, U^{-T}, ω, Q, w̄, the step count and the guard's bound), same options."""
        if not isinstance(layer, FactoredSphericalLayer) or isinstance(layer, DistributedFactoredSphericalLayer):
            raise TypeError(f"DistributedFactoredSphericalLayer.from_layer: expected a FactoredSphericalLayer; "
                            f"got {type(layer).__name__}.")
        new = cls(layer.in_features, layer.num_classes, group=group, loss=layer.loss_name,
                  loss_kwargs=layer.loss_kwargs, bias=layer.bias, reduction=layer.reduction,
                  stabilize_every=layer.stabilize_every, check_every=layer.check_every, check_tol=layer.check_tol,
                  dtype=layer.V.dtype, device=layer.V.device)
        with torch.no_grad():
            new.V.copy_(layer.V[new.lo : new.hi])
            for key in ("U", "UinvT", "omega", "Q", "wbar", "steps"):
                getattr(new, key).copy_(getattr(layer, key))
        new._cond_bound = layer._cond_bound
        return new

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rank={self.rank}/{self.world_size}, classes=[{self.lo}, {self.hi})"

    # ------------------------------------------------------------------ collectives
    def _all_reduce(self, t: Tensor, op=dist.ReduceOp.SUM) -> Tensor:
        n = t.numel() * t.element_size()
        self.comm.calls += 1
        self.comm.payload_bytes += n
        self.comm.sent_bytes += 2 * (self.world_size - 1) / self.world_size * n
        dist.all_reduce(t, op=op, group=self.group)
        return t

    def _all_gather(self, t: Tensor, dim: int = 0, *, shards: bool = True) -> Tensor:
        """Every rank's ``t`` concatenated along ``dim``. With ``shards``, ``t`` has this rank's
        shard size along ``dim`` (sizes differ by one at most): padded to the largest, then trimmed."""
        sizes = [hi - lo for lo, hi in zip(self.bounds, self.bounds[1:])] if shards else [t.shape[dim]] * self.world_size
        pad = max(sizes) - t.shape[dim]
        if pad:
            shape = list(t.shape)
            shape[dim] = pad
            t = torch.cat([t, torch.zeros(shape, dtype=t.dtype, device=t.device)], dim=dim)
        t = t.contiguous()
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        n = t.numel() * t.element_size()
        self.comm.calls += 1
        self.comm.payload_bytes += n
        self.comm.sent_bytes += (self.world_size - 1) * n
        dist.all_gather(parts, t, group=self.group)
        return torch.cat([p.narrow(dim, 0, k) for p, k in zip(parts, sizes)], dim=dim)

    # ------------------------------------------------------------------ the base layer's hooks
    def _shard_rows(self, num_classes: int) -> int:
        return self.hi - self.lo

    def _local(self, target: Tensor) -> tuple[Tensor, Tensor]:
        """(mask of the targets this rank owns, their local row; 0 for the others), no host sync."""
        owned = (target >= self.lo) & (target < self.hi)
        return owned, torch.where(owned, target - self.lo, torch.zeros_like(target))

    def _gram(self) -> tuple[Tensor, Tensor]:
        Q, wbar = super()._gram()  # this shard's WᵀW and Wᵀ1
        both = self._all_reduce(torch.cat([Q.reshape(-1), wbar]))
        d = self.d
        return both[: d * d].reshape(d, d), both[d * d :]

    def _target_rows(self, target: Tensor) -> Tensor:
        cd = self.V.dtype
        owned, rows = self._local(target)
        part = torch.where(owned[:, None], self.V[rows] @ self.U.to(cd), torch.zeros((), dtype=cd, device=target.device))
        return self._all_reduce(part).add_(self.omega.to(cd))  # each row is non-zero on one rank: the sum is exact

    def _add_rows(self, target: Tensor, rows: Tensor) -> None:
        owned, local = self._local(target)
        self.V.index_add_(0, local, torch.where(owned[:, None], rows, torch.zeros((), dtype=rows.dtype, device=rows.device)))

    @torch.no_grad()
    def stabilize(self, *, max_condition: float = 4.0) -> None:
        """As :meth:`FactoredSphericalLayer.stabilize`, with the fold decision taken on the largest
        condition number any rank measured (one all-reduce of a number), so all ranks agree; each
        rank folds its own rows."""
        sv = torch.linalg.svdvals(self.U)
        cond_t = (sv[0] / sv[-1]).reshape(1)
        cond_t = torch.nan_to_num(cond_t, nan=math.inf)
        cond = float(self._all_reduce(cond_t, op=dist.ReduceOp.MAX))
        if cond <= max_condition:
            self.UinvT.copy_(torch.linalg.inv(self.U).T)
            self._cond_bound = cond
        else:
            self._fold()

    # ------------------------------------------------------------------ evaluation and inspection
    @torch.no_grad()
    def dense_weight(self, *, local: bool = False) -> tuple[Tensor, Tensor | None]:
        """W explicitly, ``(weight, bias or None)``: all D rows on every rank (an all-gather of
        D×d: for tests and small D), or with ``local=True`` this rank's rows [lo, hi)."""
        W = torch.cat([W.to(self.V.dtype) for _, W in self._w_chunks()])
        if not local:
            W = self._all_gather(W)
        return (W[:, :-1], W[:, -1]) if self.bias else (W, None)

    @torch.no_grad()
    def scores(self, h: Tensor, *, chunk_size: int = 65536, local: bool = False) -> Tensor:
        """All outputs o = W h (m×D) on every rank (an all-gather of m×D), or with ``local=True``
        this rank's columns [lo, hi) (m×(hi − lo), no communication)."""
        H = self._augment(h)
        Ht, Hw = H @ self.U.T, H @ self.omega
        out = torch.empty(len(H), len(self.V), dtype=h.dtype, device=h.device)
        for i in range(0, len(self.V), chunk_size):
            out[:, i : i + chunk_size] = (Ht @ self.V[i : i + chunk_size].to(F64).T + Hw[:, None]).to(h.dtype)
        return out if local else self._all_gather(out, dim=1)

    @torch.no_grad()
    def topk(self, h: Tensor, k: int, *, chunk_size: int = 65536) -> tuple[Tensor, Tensor]:
        """The k largest outputs per example and their classes over all shards: each rank's top-k
        of its classes, all-gathered (m·k values and indices per rank) and merged."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.num_classes:
            raise ValueError(f"DistributedFactoredSphericalLayer.topk: k must be an int in [1, {self.num_classes}]; "
                             f"got {k!r}.")
        H = self._augment(h)
        Ht, Hw = H @ self.U.T, H @ self.omega
        best_v = torch.full((len(H), k), -math.inf, dtype=F64, device=H.device)
        best_i = torch.full((len(H), k), -1, dtype=torch.int64, device=H.device)
        for i in range(0, len(self.V), chunk_size):
            o = Ht @ self.V[i : i + chunk_size].to(F64).T + Hw[:, None]
            idx = torch.arange(self.lo + i, self.lo + i + o.shape[1], device=H.device).expand(len(H), -1)
            v, j = torch.cat([best_v, o], 1).topk(k, dim=1)
            best_v, best_i = v, torch.cat([best_i, idx], 1).gather(1, j)
        all_v = self._all_gather(best_v, dim=1, shards=False)  # m × P·k
        all_i = self._all_gather(best_i, dim=1, shards=False)
        v, j = all_v.topk(k, dim=1)
        return v.to(h.dtype), all_i.gather(1, j)

    @torch.no_grad()
    def replica_spread(self) -> float:
        """The largest difference between the ranks' copies of the d×d state (U, U^{-T}, ω, Q, w̄):
        0.0 when the replicas are identical (two all-reduces of 3d² + 2d numbers; a debug check)."""
        state = torch.cat([self.U.reshape(-1), self.UinvT.reshape(-1), self.omega, self.Q.reshape(-1), self.wbar])
        high = self._all_reduce(state.clone(), op=dist.ReduceOp.MAX)
        low = self._all_reduce(state.clone(), op=dist.ReduceOp.MIN)
        return float((high - low).abs().max())

    @torch.no_grad()
    def broadcast_state(self, src: int = 0) -> None:
        """Copy rank ``src``'s d×d state (U, U^{-T}, ω, Q, w̄, the guard's bound) to every rank."""
        state = torch.cat([self.U.reshape(-1), self.UinvT.reshape(-1), self.omega, self.Q.reshape(-1), self.wbar,
                           torch.tensor([self._cond_bound], dtype=F64, device=self.U.device)])
        n = state.numel() * state.element_size()
        self.comm.calls += 1
        self.comm.payload_bytes += n
        self.comm.sent_bytes += n if self.rank == src else 0
        dist.broadcast(state, src=dist.get_global_rank(self.group, src) if self.group is not None else src,
                       group=self.group)
        d, parts = self.d, state.split([self.d * self.d, self.d * self.d, self.d, self.d * self.d, self.d, 1])
        self.U.copy_(parts[0].reshape(d, d))
        self.UinvT.copy_(parts[1].reshape(d, d))
        self.omega.copy_(parts[2])
        self.Q.copy_(parts[3].reshape(d, d))
        self.wbar.copy_(parts[4])
        self._cond_bound = float(parts[5])


# ---------------------------------------------------------------------- local launcher
def launch_local(fn: Callable[..., Any], world_size: int, *args: Any, backend: str = "gloo", threads: int = 1,
                 start_method: str = "spawn", timeout: float | None = None) -> list[Any]:
    """Run ``fn(*args)`` in ``world_size`` new processes joined in a ``backend`` process group on
    this machine (a file rendezvous: no port to choose), and return each rank's result, in rank
    order. For tests and benchmarks; real jobs launch with ``torchrun``.

    ``fn`` must be importable by name (a module's top-level function). Each process uses
    ``threads`` torch threads. ``start_method``: ``"spawn"`` (fresh interpreters, which import
    torch again: seconds each) or ``"fork"`` (copies of this process, near-instant; POSIX only, and
    safe only while this process runs no CUDA). ``timeout``: seconds before the processes are
    terminated and ``TimeoutError`` raised (None: wait).
    """
    import time

    import torch.multiprocessing as mp

    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"launch_local: world_size must be an int ≥ 1; got {world_size!r}.")
    if start_method not in ("spawn", "fork", "forkserver"):
        raise ValueError(f"launch_local: start_method must be 'spawn', 'fork' or 'forkserver'; got {start_method!r}.")
    with tempfile.TemporaryDirectory(prefix="lossbook_dist_") as tmp:
        ctx = mp.start_processes(_launch_entry, args=(fn, world_size, backend, threads, tmp, args), nprocs=world_size,
                                 join=False, start_method=start_method)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not ctx.join(timeout=1.0):
            if deadline is not None and time.monotonic() > deadline:
                for proc in ctx.processes:
                    if proc.is_alive():
                        proc.terminate()
                raise TimeoutError(f"launch_local: the {world_size} processes did not finish within {timeout} s.")
        return [torch.load(os.path.join(tmp, f"{r}.pt"), weights_only=False) for r in range(world_size)]


def _launch_entry(rank: int, fn, world_size: int, backend: str, threads: int, tmp: str, args: tuple) -> None:
    torch.set_num_threads(threads)
    dist.init_process_group(backend, init_method=f"file://{os.path.join(tmp, 'rendezvous')}", rank=rank,
                            world_size=world_size)
    try:
        result = fn(*args)
        torch.save(result, os.path.join(tmp, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()
