"""AdaLoRA's budget allocation as pure functions: schedule, importance scores, masking threshold, regulariser.

Zhang et al., 2023, "Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning" (ICLR), arXiv 2303.10512.
Reference code: github.com/QingruZhang/AdaLoRA ``loralib/adalora.py`` (``RankAllocator``, ``compute_orth_regu``)
and PEFT's ``peft/tuners/adalora/layer.py`` (``RankAllocator``), which reproduces it. Where the paper and the
code differ, these functions follow the code, because the code produced the paper's numbers; each docstring
says where.

Notation (per adapted matrix ``W0`` of shape ``(d_out, d_in)``, initial rank ``r``)::

    W = W0 + scaling * P diag(lambda) Q      P: (d_out, r)   lambda: (r,)   Q: (r, d_in)

A *triplet* ``i`` is ``(P[:, i], lambda[i], Q[i, :])``; the *budget* is the number of triplets kept across all
adapted matrices together.
"""

from __future__ import annotations

import math

import torch

from adapterbench.errors import UserError


def resolve_steps(value: float, total_steps: int, name: str) -> int:
    """A schedule length given as a fraction of the run (``0 <= value < 1``) or as a step count (``value >= 1``).

    Fractions round to the nearest step (``t_init=0.1`` of 250 steps is 25 steps); counts must be whole numbers.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise UserError(f"{name}={value!r} is not allowed: give a fraction of the run in [0, 1) "
                        f"or a whole number of steps >= 1")
    if value < 1:
        return int(round(value * total_steps))
    if value != int(value):
        raise UserError(f"{name}={value!r} is not allowed: values >= 1 are step counts and must be whole numbers "
                        f"(use a value below 1 for a fraction of the run)")
    return int(value)


def budget_schedule(step: int, *, init_budget: int, target_budget: int, t_init: int, t_final: int,
                    total_steps: int, delta_t: int) -> tuple[int, bool]:
    """The global budget ``b(t)`` and whether to mask at step ``t`` (1-based: ``t`` optimizer steps taken).

    As in the official ``RankAllocator.schedule_threshold`` (and PEFT's ``budget_schedule``)::

        t <= t_init                        b = init_budget                              mask: no
        t_init < t <= T - t_final          b = int(target + (init - target) * m**3),    mask: t % delta_t == 0
                                           m = 1 - (t - t_init) / (T - t_final - t_init)
        t > T - t_final                    b = target_budget                            mask: yes (fixed pattern)

    The paper's appendix prints the cubic in a slightly different form; this function follows the code
    (``int`` truncation; masking every ``delta_t`` steps during the decrease, then at every step with a frozen
    pattern). At ``t == T - t_final`` the cubic term is zero, so ``b = target_budget``.
    """
    if step <= t_init:
        return init_budget, False
    if step > total_steps - t_final:
        return target_budget, True
    m = 1 - (step - t_init) / (total_steps - t_final - t_init)
    budget = int((init_budget - target_budget) * (m ** 3) + target_budget)
    return budget, step % delta_t == 0


def sensitivity(weight: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
    """Entry-wise sensitivity ``I = |w * dL/dw|`` (eq. 8), a first-order estimate of the loss change on removal."""
    if grad is None:  # a tensor that took no part in this step's loss: no evidence, zero sensitivity
        return torch.zeros_like(weight, dtype=torch.float32)
    return (weight.detach() * grad.detach()).abs().float()


def smooth_importance(ipt_avg: torch.Tensor, unc_avg: torch.Tensor, ipt: torch.Tensor, beta1: float,
                      beta2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the smoothed sensitivity and its uncertainty (eqs. 9-10); all tensors share one shape.

    ``I_bar <- beta1 * I_bar + (1 - beta1) * I`` and ``U_bar <- beta2 * U_bar + (1 - beta2) * |I - I_bar|``, where
    ``|I - I_bar|`` uses the *new* ``I_bar`` as in the code. The entry's score is ``s = I_bar * U_bar`` (eq. 11).
    """
    ipt_avg = beta1 * ipt_avg + (1 - beta1) * ipt
    unc_avg = beta2 * unc_avg + (1 - beta2) * (ipt - ipt_avg).abs()
    return ipt_avg, unc_avg


def triplet_scores(score_p: torch.Tensor, score_lambda: torch.Tensor, score_q: torch.Tensor) -> torch.Tensor:
    """Importance of each triplet (eq. 7): ``S_i = s(lambda_i) + mean_j s(Q_ij) + mean_k s(P_ki)``.

    Shapes: ``score_p`` (d_out, r), ``score_lambda`` (r,), ``score_q`` (r, d_in) -> (r,).
    """
    return score_lambda.reshape(-1) + score_q.mean(dim=1) + score_p.mean(dim=0)


def masking_threshold(scores: list[torch.Tensor], init_budget: int, budget: int) -> float:
    """The score at or below which triplets are masked so that about ``budget`` of ``init_budget`` remain.

    The ``init_budget - budget``-th smallest score over all matrices (``torch.kthvalue``, as the code does);
    triplets scoring ``<= threshold`` are masked, so ties may mask a few more. ``-inf`` masks nothing.
    """
    n_masked = init_budget - budget
    if n_masked <= 0:
        return -math.inf
    return torch.kthvalue(torch.cat([s.reshape(-1) for s in scores]).float(), n_masked).values.item()


def orthogonality_penalty(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``||P^T P - I||_F + ||Q Q^T - I||_F`` for ``P`` (d_out, r) and ``Q`` (r, d_in); zero iff both orthonormal.

    The paper (eq. 4) writes the squared norms, ``R(P, Q) = ||P^T P - I||_F^2 + ||Q Q^T - I||_F^2``; the official
    ``compute_orth_regu`` and PEFT use the plain Frobenius norms and average them over all matrices, and the
    published coefficients (gamma = 0.1 to 0.3) were tuned with that form, so it is the one used here.
    """
    eye_p = torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
    eye_q = torch.eye(q.shape[0], dtype=q.dtype, device=q.device)
    return torch.linalg.matrix_norm(p.T @ p - eye_p) + torch.linalg.matrix_norm(q @ q.T - eye_q)
