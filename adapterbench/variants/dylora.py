"""``dylora``: LoRA trained for every rank 1..r_max at once, by sampling the active rank each step.

Valipour, Rezagholizadeh, Kobyzev & Ghodsi, 2023, "DyLoRA: Parameter-Efficient Tuning of Pre-trained Models using
Dynamic Search-Free Low-Rank Adaptation", EACL (https://arxiv.org/abs/2210.07558); official code
github.com/huawei-noah/KD-NLP/tree/main/DyLoRA, now github.com/huawei-noah/Efficient-NLP (``loralib/layers.py``,
the ``dynamic`` truncation module in ``loralib/DyLoRA.py``, and ``examples/NLU``).

For a frozen linear layer ``W`` (out x in) with adapter ``A`` (r_max x in) and ``B`` (out x r_max), at rank
``b`` in 1..r_max::

    h = W x + (alpha / b) * B[:, :b] @ A[:b, :] @ dropout(x)

Each training step draws one ``b`` uniformly from 1..r_max (shared by every adapted module, as the official
training loop calls ``set_rank`` on all layers with one draw). The official code stores the LoRA scaling
``alpha / r_max`` and multiplies both truncated factors by ``sqrt(r_max / b)``; the product is ``alpha / b``,
which is what we write directly.

Modes (the official ``frozen`` flag of ``set_rank``):

* ``frozen`` (the default): of the first ``b`` rows of A / columns of B, rows/columns ``1..b-1`` are
  used but detached and only the b-th row of A and the b-th column of B receive gradient that step (official
  ``dynamic.forward``: ``cat([inputs[:, :rank].detach(), inputs[:, rank]])`` with the 0-based index
  ``rank = b - 1``). Rows above ``b`` are not used at all. Source of the default: the official GLUE script
  (``DyLoRA/examples/NLU/examples/text-classification/run_glue.py``, ``callback_step.on_step_begin``) draws
  ``new_rank = torch.randint(0, maximum_rank, (1,))`` before every optimizer step and calls
  ``model.set_rank(new_rank, frozen=True)``; the library's own ``set_rank`` defaults to ``frozen=False``, so
  the script, which produced the paper's GLUE runs, is what we follow.
* ``all``: every one of the first ``b`` rows/columns receives gradient (the library default, unused by the
  official scripts). It learns faster in a short run (``results/probe-sst2-budget/``), but is not the method
  as trained in the paper's code.

As in the official code the detached rows get an exact zero gradient, not a frozen ``requires_grad``; an
optimizer with momentum or weight decay (AdamW) may therefore still move them slightly, exactly as it did there.

Evaluation uses every rank in ``eval_ranks`` (default 1..r_max, one evaluation each); outside training and
outside an evaluation point the adapter runs at r_max. The update can be merged at ``merge_rank``.

Default learning rate: 4e-4, from the LoRA RoBERTa-base GLUE recipe that the official DyLoRA code (built on
Microsoft's ``loralib``) follows: Hu et al., 2021, Table 9 gives 4e-4 for MRPC, CoLA, QNLI and STS-B and 5e-4 for
MNLI, SST-2, QQP and RTE, with r=8 on query and value; the official ``roberta_base_<task>.sh`` scripts use exactly
these rates, with r=8, alpha=16 (our defaults) and weight decay 0.1, which is a loop setting here, shared by every
variant of a comparison (0.01 in every profile).
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from adapterbench.errors import UserError
from adapterbench.variants.base import TrainState, Variant, VariantConfig, freeze_all_but_head
from adapterbench.variants.targets import find_targets

MODES = ("frozen", "all")


# ---- pure functions ------------------------------------------------------------------------------------
def truncate_factors(a: torch.Tensor, b_mat: torch.Tensor, rank: int,
                     frozen: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``rank`` rows of ``a`` (r_max x in) and columns of ``b_mat`` (out x r_max).

    With ``frozen`` only the last kept row/column (index ``rank - 1``) stays attached to the graph.
    Returns ``(a_b, b_b)`` with shapes (rank x in) and (out x rank).
    """
    if frozen and rank > 1:
        a_b = torch.cat([a[: rank - 1].detach(), a[rank - 1: rank]], dim=0)
        b_b = torch.cat([b_mat[:, : rank - 1].detach(), b_mat[:, rank - 1: rank]], dim=1)
        return a_b, b_b
    return a[:rank], b_mat[:, :rank]


def rank_scaling(alpha: float, rank: int) -> float:
    """``alpha / b``: the official ``alpha / r_max`` times ``sqrt(r_max / b)`` on each of the two factors."""
    return alpha / rank


def lowrank_delta(a: torch.Tensor, b_mat: torch.Tensor, rank: int, alpha: float) -> torch.Tensor:
    """The weight update at ``rank``: ``(alpha / b) * B[:, :b] @ A[:b, :]``, shape (out x in)."""
    return rank_scaling(alpha, rank) * (b_mat[:, :rank] @ a[:rank])


def sample_rank(r_max: int, generator: torch.Generator) -> int:
    """One rank drawn uniformly from 1..r_max (the paper's uniform p_B)."""
    return int(torch.randint(1, r_max + 1, (1,), generator=generator).item())


def parse_eval_ranks(spec: Any, r_max: int) -> list[int]:
    """``""``/``"all"`` -> 1..r_max; ``"1,2,4,8"`` or a single int -> those ranks, sorted and de-duplicated."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return list(range(1, r_max + 1))
    items = [spec] if isinstance(spec, int) and not isinstance(spec, bool) else str(spec).split(",")
    ranks: set[int] = set()
    for item in items:
        text = str(item).strip()
        try:
            value = int(text)
        except ValueError:
            raise UserError(f"eval_ranks item {text!r} is not an integer; give ranks in 1..{r_max} "
                            f"like '1,2,4,{r_max}', or 'all'") from None
        if not 1 <= value <= r_max:
            raise UserError(f"eval_ranks item {value} is outside 1..r={r_max}")
        ranks.add(value)
    return sorted(ranks)


# ---- the layer -----------------------------------------------------------------------------------------
class DyLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a nested low-rank update usable at any rank 1..r_max.

    ``train_rank`` is the rank drawn for the current step (used in training mode); ``eval_rank`` the rank of the
    current evaluation point (used in eval mode). ``None`` for either means r_max.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float, frozen: bool):
        super().__init__()
        self.base = base
        self.r = r
        self.alpha = alpha
        self.frozen = frozen
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        weight = base.weight
        self.lora_A = nn.Parameter(weight.new_empty(r, base.in_features))
        self.lora_B = nn.Parameter(weight.new_zeros(base.out_features, r))
        # As in the official layer (and LoRA): A like nn.Linear's default, B zero so training starts at W.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.train_rank: int | None = None
        self.eval_rank: int | None = None
        self.merged_rank: int | None = None

    def active_rank(self) -> int:
        rank = self.train_rank if self.training else self.eval_rank
        return self.r if rank is None else rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        if self.merged_rank is not None:
            return result  # the update at merged_rank is already inside base.weight
        rank = self.active_rank()
        a_b, b_b = truncate_factors(self.lora_A, self.lora_B, rank, self.frozen and self.training)
        # x: (..., in) -> (..., rank) -> (..., out)
        update = self.dropout(x) @ a_b.T.to(x.dtype) @ b_b.T.to(x.dtype)
        return result + update * rank_scaling(self.alpha, rank)

    @torch.no_grad()
    def merge(self, rank: int) -> None:
        if self.merged_rank is not None:
            raise RuntimeError("DyLoRA layer is already merged")
        self.base.weight += lowrank_delta(self.lora_A, self.lora_B, rank, self.alpha).to(self.base.weight.dtype)
        self.merged_rank = rank

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged_rank is None:
            return
        delta = lowrank_delta(self.lora_A, self.lora_B, self.merged_rank, self.alpha)
        self.base.weight -= delta.to(self.base.weight.dtype)
        self.merged_rank = None


def dylora_layers(model: nn.Module) -> list[DyLoRALinear]:
    return [m for m in model.modules() if isinstance(m, DyLoRALinear)]


# ---- the variant ---------------------------------------------------------------------------------------
@dataclass
class DyLoRAConfig(VariantConfig):
    r: int = 8  # r_max
    alpha: float = 16.0
    dropout: float = 0.0
    targets: str = "query,value"
    mode: str = "frozen"  # "frozen" (the official GLUE script's) or "all"
    eval_ranks: str = "all"  # "all" or a comma list such as "1,2,4,8"
    merge_rank: int = 0  # 0 means r_max
    seed: int = -1  # rank-sampling seed; -1 derives it once from the run's seeded torch RNG


class DyLoRA(Variant):
    """Dynamic-rank LoRA; see the module docstring for the formula, the modes and the sources."""

    # What the reports chart (adapterbench.schema.ReportHints): the evaluation points are ranks.
    report_hints = {"points": {"axis": "evaluated rank r", "label": "r={point}", "scale": "log2"}}
    name = "dylora"
    paper = ("Valipour et al., 2023, DyLoRA: Parameter-Efficient Tuning of Pre-trained Models using Dynamic "
             "Search-Free Low-Rank Adaptation https://arxiv.org/abs/2210.07558")
    default_lr = 4e-4
    Config = DyLoRAConfig
    mergeable = True

    def __init__(self, config: DyLoRAConfig | None = None):
        super().__init__(config)
        self._generator: torch.Generator | None = None
        self._sampled: Counter[int] = Counter()

    def validate_config(self) -> None:
        c = self.config
        if isinstance(c.r, bool) or not isinstance(c.r, int) or c.r < 1:
            raise UserError(f"r={c.r!r} must be a positive integer (the maximum rank)")
        if isinstance(c.alpha, bool) or not isinstance(c.alpha, (int, float)) or c.alpha <= 0:
            raise UserError(f"alpha={c.alpha!r} must be a positive number")
        if isinstance(c.dropout, bool) or not isinstance(c.dropout, (int, float)) or not 0 <= c.dropout < 1:
            raise UserError(f"dropout={c.dropout!r} must be a number in [0, 1)")
        if c.mode not in MODES:
            raise UserError(f"mode={c.mode!r} is not allowed; allowed: {', '.join(MODES)}")
        # ``--set merge_rank=none`` / ``seed=none`` arrive as None: the same as the 0 / -1 sentinels.
        c.merge_rank = 0 if c.merge_rank is None else c.merge_rank
        c.seed = -1 if c.seed is None else c.seed
        if isinstance(c.merge_rank, bool) or not isinstance(c.merge_rank, int) or not 0 <= c.merge_rank <= c.r:
            raise UserError(f"merge_rank={c.merge_rank!r} must be an integer in 1..r={c.r} (or 0 for r)")
        if isinstance(c.seed, bool) or not isinstance(c.seed, int) or not -1 <= c.seed < 2**64:
            raise UserError(f"seed={c.seed!r} must be an integer in 0..{2**64 - 1} (torch.Generator's range), "
                            f"or -1 to derive it from the run seed")
        if not isinstance(c.targets, str) or not c.targets.strip():
            raise UserError(f"targets={c.targets!r} must name roles (query,value,...), module suffixes or all-linear")
        self.ranks = parse_eval_ranks(c.eval_ranks, c.r)

    # ---- hooks ---------------------------------------------------------------------------------------
    def apply(self, model: nn.Module, arch: Any) -> None:
        c = self.config
        freeze_all_but_head(model)
        for name, linear in find_targets(model, c.targets, arch):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, DyLoRALinear(linear, c.r, float(c.alpha), float(c.dropout),
                                                frozen=c.mode == "frozen"))

    def on_train_start(self, state: TrainState) -> None:
        seed = self.config.seed
        if seed < 0:
            # Derived from the harness-seeded global RNG without drawing from it (a draw would shift the dropout
            # stream relative to other variants): reproducible per run seed; the private generator then keeps
            # rank sampling off the global stream.
            seed = torch.initial_seed() % 2**62
        self._generator = torch.Generator().manual_seed(seed)

    def on_step_start(self, state: TrainState) -> None:
        if self._generator is None:
            self.on_train_start(state)
        rank = sample_rank(self.config.r, self._generator)
        self._set(state.model, train_rank=rank)
        self._sampled[rank] += 1
        state.log["dylora/rank"] = rank

    def on_train_end(self, state: TrainState) -> None:
        self._set(state.model, train_rank=None)

    def eval_points(self) -> list[Any]:
        return list(self.ranks)

    @contextlib.contextmanager
    def use_eval_point(self, model: nn.Module, point: Any) -> Iterator[None]:
        layers = dylora_layers(model)
        previous = [layer.eval_rank for layer in layers]
        rank = None if point is None else int(point)
        if rank is not None and not 1 <= rank <= self.config.r:
            raise UserError(f"DyLoRA evaluation rank {rank} is outside 1..r={self.config.r}")
        try:
            for layer in layers:
                layer.eval_rank = rank
            yield
        finally:
            for layer, old in zip(layers, previous):
                layer.eval_rank = old

    def merge(self, model: nn.Module) -> None:
        rank = self.config.merge_rank or self.config.r
        for layer in dylora_layers(model):
            layer.merge(rank)

    def unmerge(self, model: nn.Module) -> None:
        for layer in dylora_layers(model):
            layer.unmerge()

    def describe(self, model: nn.Module) -> dict[str, Any]:
        return {
            "r_max": self.config.r,
            "eval_ranks": list(self.ranks),
            "mode": self.config.mode,
            "alpha": self.config.alpha,
            "merge_rank": self.config.merge_rank or self.config.r,
            "adapted_modules": len(dylora_layers(model)),
            "sampled_rank_counts": {str(k): v for k, v in sorted(self._sampled.items())},
            "report": self.report_hints,
        }

    def deployed_parameters(self, model: nn.Module, point: Any) -> int | None:
        """At rank b each adapted (d_out x d_in) matrix keeps ``b * (d_in + d_out)`` parameters (A[:b], B[:, :b])."""
        rank = (self.config.merge_rank or self.config.r) if point is None else int(point)
        return sum(rank * (layer.lora_A.shape[1] + layer.lora_B.shape[0]) for layer in dylora_layers(model))

    @staticmethod
    def _set(model: nn.Module, train_rank: int | None) -> None:
        for layer in dylora_layers(model):
            layer.train_rank = train_rank
