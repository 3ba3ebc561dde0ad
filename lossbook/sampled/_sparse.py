"""Row gathers whose gradient is a sparse COO tensor touching only the gathered rows."""

from __future__ import annotations

import torch
from torch import Tensor


class _SparseRowGather(torch.autograd.Function):
    """``param.index_select(0, ids)`` whose backward returns a sparse (uncoalesced) gradient of
    ``param``'s shape: O(len(ids)·d) instead of a dense D×d zero-filled matrix."""

    @staticmethod
    def forward(ctx, param: Tensor, ids: Tensor) -> Tensor:
        ctx.save_for_backward(ids)
        ctx.shape = param.shape
        return param.index_select(0, ids)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (ids,) = ctx.saved_tensors
        g = torch.sparse_coo_tensor(ids.unsqueeze(0), grad, ctx.shape, check_invariants=False)
        return g, None


def gather_rows(param: Tensor, ids: Tensor, *, sparse: bool) -> Tensor:
    """Rows ``param[ids]``; with ``sparse=True`` the gradient of ``param`` is sparse.

    Optimisers that accept sparse gradients: ``torch.optim.SGD`` (without weight decay),
    ``SparseAdam``, ``Adagrad``. Double backward is not supported on the sparse path.
    """
    if sparse and param.requires_grad and torch.is_grad_enabled():
        return _SparseRowGather.apply(param, ids)
    return param.index_select(0, ids)
