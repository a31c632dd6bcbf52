"""Low-rank update math shared by the LoRA family, as small pure functions.

LoRA (Hu et al., 2021, arXiv 2106.09685) keeps a pretrained linear layer ``W0`` (``d_out x d_in``) frozen and
learns a rank-``r`` update ``ΔW = s · B A`` with ``A`` (``r x d_in``) and ``B`` (``d_out x r``)::

    h = W0 x + b + s · B (A x)

``s`` is ``alpha / r`` (the paper, §4.1), or ``alpha / sqrt(r)`` with rank-stabilised scaling (rsLoRA,
Kalajdzievski, 2023, arXiv 2312.03732), which keeps the update's scale independent of the rank.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from adapterbench.errors import UserError


def lora_scaling(alpha: float, r: int, rslora: bool = False) -> float:
    """``s = alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA."""
    return alpha / math.sqrt(r) if rslora else alpha / r


def init_lora_(A: torch.Tensor, B: torch.Tensor) -> None:
    """LoRA's initialisation, in place: ``A`` Kaiming-uniform with ``a = sqrt(5)``, ``B = 0``.

    ``a = sqrt(5)`` is ``nn.Linear``'s default, which loralib and PEFT use for ``A``; with ``B = 0`` the update
    starts at exactly zero, so the adapted model starts as the pretrained one (paper §4.1).
    """
    with torch.no_grad():
        torch.nn.init.kaiming_uniform_(A, a=math.sqrt(5))
        B.zero_()


def lowrank_delta(A: torch.Tensor, B: torch.Tensor, scaling: float) -> torch.Tensor:
    """``ΔW = s · B A``: ``(d_out x r) @ (r x d_in) -> (d_out x d_in)``, the update merged into ``W0``."""
    return (B @ A).mul_(scaling)


def lora_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, A: torch.Tensor,
                B: torch.Tensor, scaling: float, x_lora: torch.Tensor | None = None) -> torch.Tensor:
    """``h = x W0ᵀ + b + s · (x_lora Aᵀ) Bᵀ`` for ``x`` of shape ``(..., d_in)``; returns ``(..., d_out)``.

    ``x_lora`` is the input of the low-rank path (``x`` after LoRA's dropout); ``None`` means ``x`` itself.
    Tokens are flattened to ``(N, d_in)`` (a view for contiguous input) so every product is one plain GEMM;
    the arithmetic lives in :class:`LoRALinearFunction`.

    Under autocast (the harness's bf16 mixed precision) every operand is cast to the autocast dtype, as autocast
    does for ``F.linear``, and the function runs with autocast off: its in-place accumulation needs one dtype,
    and the casts are differentiable, so ``A`` and ``B`` still receive gradients in their own dtype.
    """
    x2 = x.reshape(-1, x.shape[-1])  # (N, d_in)
    x_lora2 = None if x_lora is None else x_lora.reshape(-1, x.shape[-1])
    device = x.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        x2, x_lora2, weight, bias, A, B = (None if t is None else t.to(dtype)
                                           for t in (x2, x_lora2, weight, bias, A, B))
        with torch.autocast(device, enabled=False):
            h = LoRALinearFunction.apply(x2, x_lora2, weight, bias, A, B, scaling)  # (N, d_out)
    else:
        h = LoRALinearFunction.apply(x2, x_lora2, weight, bias, A, B, scaling)  # (N, d_out)
    return h.view(*x.shape[:-1], h.shape[-1])


class LoRALinearFunction(torch.autograd.Function):
    """The LoRA linear layer with a hand-written backward, because it runs in every adapted layer of every step.

    Forward, for ``x`` ``(N, d_in)``, ``W0`` ``(d_out, d_in)``, ``A`` ``(r, d_in)``, ``B`` ``(d_out, r)``::

        h  = x W0ᵀ + b                      (N, d_out)
        h += s · (x_l Aᵀ) Bᵀ                 (N, r) then (N, d_out), accumulated in place (BLAS beta = 1)
                                             ((x_l Aᵀ) is computed and kept transposed, as (A x_lᵀ): (r, N))

    with ``x_l`` the low-rank path's input (``x`` itself without dropout). ``B A`` (``d_out x d_in``) is never
    formed, and the sum needs no ``(N, d_out)`` temporaries for ``B(Ax)``, ``s·B(Ax)`` or the addition.

    Backward, for ``g = ∂L/∂h`` ``(N, d_out)`` and ``u = s · g B`` ``(N, r)``::

        ∂L/∂B  = s · ((x_l Aᵀ)ᵀ g)ᵀ          (d_out, r)
        ∂L/∂A  = uᵀ x_l                      (r, d_in)
        ∂L/∂x  = g W0 + u A                  (N, d_in), one GEMM accumulated into the other
        ∂L/∂W0 = gᵀ x,  ∂L/∂b = Σ_n g        only if the base layer is trainable (never in LoRA itself)

    Why not plain autograd: for ``h.addmm_(xa, B.t())`` (or PEFT's ``lora_B(lora_A(x))``) autograd computes
    ``∂L/∂B`` as ``gᵀ xa`` in the layout of ``B``, a ``(d_out, N) x (N, r)`` GEMM that MKL ran about 5x slower
    than the equivalent ``(xaᵀ g)ᵀ`` (N=2048, d=384, r=8 on this project's CPU), and ``g B`` about 2x slower than
    ``(Bᵀ gᵀ)ᵀ``; it would also sum ``∂L/∂x`` from two branches with an extra ``(N, d_in)`` add. Measured on one
    such layer (forward + backward, one thread, best of 190): frozen linear 19.2 ms, this function 20.1 ms, the
    same maths through autograd 22.3 ms, PEFT's formulation 29.1 ms (before ``A x_lᵀ`` replaced ``x_l Aᵀ``). Only what a requested gradient needs is saved: ``x_l`` for
    ``A``, ``x_l Aᵀ`` for ``B`` (both also what PEFT's LoRA saves); the frozen base layer saves nothing of ``x``.
    """

    @staticmethod
    def forward(ctx, x, x_lora, weight, bias, A, B, scaling):  # noqa: D102 (documented on the class)
        need_x, need_xl, need_w, _, need_a, need_b = ctx.needs_input_grad[:6]
        xl = x if x_lora is None else x_lora
        h = F.linear(x, weight, bias)  # (N, d_out)
        xa_t = torch.mm(A, xl.t())  # (r, N) = (x_l Aᵀ)ᵀ; this layout's GEMM ran 1.4-1.7x faster than x_l Aᵀ
        h.addmm_(xa_t.t(), B.t(), alpha=scaling)  # h += s · (x_l Aᵀ) Bᵀ
        ctx.scaling = scaling
        ctx.fused_input = x_lora is None  # ∂L/∂x gets both terms in one buffer
        ctx.save_for_backward(x if need_w else None, xl if need_a else None, xa_t if need_b else None,
                              weight if need_x else None, A if (need_x or need_xl) else None,
                              B if (need_x or need_xl or need_a) else None)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):  # noqa: D102
        x, xl, xa_t, weight, A, B = ctx.saved_tensors
        need_x, need_xl, need_w, need_bias, need_a, need_b = ctx.needs_input_grad[:6]
        s = ctx.scaling
        gx = gxl = gw = gbias = gA = gB = None
        ut = None
        if need_x or need_xl or need_a:
            ut = torch.mm(B.t(), g.t()).mul_(s)  # uᵀ = s · Bᵀ gᵀ  (r, N)
        if need_x:
            gx = torch.mm(g, weight)  # (N, d_in)
            if ctx.fused_input:
                gx.addmm_(ut.t(), A)  # += u A
        if need_xl:
            gxl = torch.mm(ut.t(), A)
        if need_a:
            gA = torch.mm(ut, xl)  # (r, d_in)
        if need_b:
            gB = torch.mm(xa_t, g).mul_(s).t().contiguous()  # (d_out, r)
        if need_w:
            gw = torch.mm(g.t(), x)
        if need_bias:
            gbias = g.sum(0)
        return gx, gxl, gw, gbias, gA, gB, None


def parse_rank_pattern(text: str) -> dict[str, int]:
    """``"value=4,query=16"`` -> ``{"value": 4, "query": 16}``; keys are roles or module suffixes.

    Raises :class:`UserError` on a malformed item or a rank that is not a positive integer.
    """
    pattern: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not key:
            raise UserError(f"rank_pattern item {item!r} is not key=rank; expected e.g. 'value=4,query=16'")
        try:
            rank = int(value)
        except ValueError:
            rank = 0
        if rank <= 0 or str(rank) != value.lstrip("+"):
            raise UserError(f"rank_pattern rank {value!r} for {key!r} is not a positive integer")
        if key in pattern:
            raise UserError(f"rank_pattern names {key!r} twice; give each role or suffix once")
        pattern[key] = rank
    return pattern
