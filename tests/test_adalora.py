"""AdaLoRA: schedule, scores and masking against hand-computed values and against PEFT's RankAllocator."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch

from adapterbench.errors import UserError
from adapterbench.testing import TINY_ARCHITECTURES, tiny_batch, tiny_model, train_tiny
from adapterbench.variants import VARIANTS
from adapterbench.variants import adalora_allocation as alloc
from adapterbench.variants.adalora import BUDGET_LOG_KEY, AdaLoRA, AdaLoRAConfig, SVDLinear, svd_delta
from adapterbench.variants.base import TrainState, head_parameters

# ---- pure math --------------------------------------------------------------------------------------------


def test_budget_at_chosen_steps_hand_computed():
    # init 24, target 16, T=10, t_init=2, t_final=3 -> decrease over steps 3..7 with m = 1 - (t-2)/5
    kw = dict(init_budget=24, target_budget=16, t_init=2, t_final=3, total_steps=10, delta_t=2)
    expected = {
        1: (24, False), 2: (24, False),            # warm-up at the full budget, no masking
        3: (20, False),                            # 16 + 8 * 0.8**3 = 20.096 -> 20; 3 % 2 != 0
        4: (17, True),                             # 16 + 8 * 0.6**3 = 17.728 -> 17
        5: (16, False),                            # 16 + 8 * 0.4**3 = 16.512 -> 16
        6: (16, True),                             # 16.064 -> 16
        7: (16, False),                            # m = 0 at T - t_final
        8: (16, True), 9: (16, True), 10: (16, True),  # final phase: target budget, fixed mask every step
    }
    for step, want in expected.items():
        assert alloc.budget_schedule(step, **kw) == want, step


def test_resolve_steps_fractions_and_counts():
    assert alloc.resolve_steps(0.1, 250, "t_init") == 25
    assert alloc.resolve_steps(0.3, 10, "t_final") == 3
    assert alloc.resolve_steps(0, 10, "t_final") == 0
    assert alloc.resolve_steps(7, 10, "t_init") == 7
    assert alloc.resolve_steps(7.0, 10, "t_init") == 7
    with pytest.raises(UserError, match=r"t_init=2\.5"):
        alloc.resolve_steps(2.5, 10, "t_init")
    with pytest.raises(UserError, match=r"t_final=-1"):
        alloc.resolve_steps(-1, 10, "t_final")


def test_smoothing_and_triplet_scores():
    ipt = torch.tensor([1.0, 3.0])
    ipt_avg, unc_avg = alloc.smooth_importance(torch.zeros(2), torch.zeros(2), ipt, 0.5, 0.8)
    assert torch.allclose(ipt_avg, torch.tensor([0.5, 1.5]))
    assert torch.allclose(unc_avg, 0.2 * torch.tensor([0.5, 1.5]))  # |I - I_bar_new| with the new average
    s_p = torch.tensor([[1.0, 2.0], [3.0, 6.0]])  # (d_out=2, r=2): column means 2, 4
    s_lam = torch.tensor([10.0, 20.0])
    s_q = torch.tensor([[1.0, 1.0, 4.0], [0.0, 0.0, 3.0]])  # (r=2, d_in=3): row means 2, 1
    assert torch.allclose(alloc.triplet_scores(s_p, s_lam, s_q), torch.tensor([14.0, 25.0]))


def test_masking_threshold_counts():
    scores = [torch.tensor([0.5, 0.1, 0.9]), torch.tensor([0.3, 0.7])]
    assert alloc.masking_threshold(scores, init_budget=5, budget=3) == pytest.approx(0.3)  # 2nd smallest
    assert alloc.masking_threshold(scores, init_budget=5, budget=5) == -math.inf


def test_orthogonality_penalty_zero_iff_orthonormal():
    g = torch.Generator().manual_seed(0)
    p, _ = torch.linalg.qr(torch.randn(16, 4, generator=g))  # orthonormal columns: P^T P = I
    q_t, _ = torch.linalg.qr(torch.randn(10, 4, generator=g))
    q = q_t.T  # orthonormal rows: Q Q^T = I
    assert alloc.orthogonality_penalty(p, q).item() == pytest.approx(0.0, abs=1e-5)
    assert alloc.orthogonality_penalty(p * 1.1, q).item() > 0.1
    assert alloc.orthogonality_penalty(p, torch.randn(4, 10, generator=g)).item() > 0.1


# ---- the layer ----------------------------------------------------------------------------------------------


def _random_layer(r: int = 6, seed: int = 0) -> SVDLinear:
    torch.manual_seed(seed)
    layer = SVDLinear(torch.nn.Linear(10, 7), r=r, alpha=12.0, dropout=0.0)
    with torch.no_grad():
        layer.lora_lambda.normal_()
        layer.lora_P.normal_()
        layer.lora_Q.normal_()
    return layer


def test_update_is_zero_at_init():
    torch.manual_seed(0)
    base = torch.nn.Linear(10, 7)
    layer = SVDLinear(base, r=4, alpha=8.0, dropout=0.0)
    x = torch.randn(3, 10)
    assert torch.equal(layer(x), base(x))
    assert 0.005 < layer.lora_P.std().item() < 0.04  # N(0, 0.02^2) as the official code


def test_masked_triplets_contribute_nothing():
    layer = _random_layer()
    x = torch.randn(5, 10)
    keep = torch.tensor([True, False, True, True, False, False])
    layer.apply_mask(keep)
    assert torch.all(layer.lora_lambda[~keep] == 0) and layer.rank == 3
    want = layer.base(x) + svd_delta(x, layer.lora_P[:, keep], layer.lora_lambda[keep], layer.lora_Q[keep],
                                     layer.scaling)
    assert torch.allclose(layer(x), want, atol=1e-5)
    # and the kept triplets do contribute
    assert not torch.allclose(layer(x), layer.base(x), atol=1e-3)


def test_forward_formula_and_merge_roundtrip():
    layer = _random_layer()
    x = torch.randn(4, 10)
    dense = layer.scaling * layer.lora_P @ torch.diag(layer.lora_lambda) @ layer.lora_Q
    assert torch.allclose(layer(x), layer.base(x) + x @ dense.T, atol=1e-4)
    w0 = layer.base.weight.detach().clone()
    before = layer(x)
    layer.merge()
    assert torch.allclose(layer(x), before, atol=1e-4)
    layer.unmerge()
    assert torch.allclose(layer.base.weight, w0, atol=1e-5)


# ---- the variant --------------------------------------------------------------------------------------------


def test_registry_resolves_adalora():
    assert VARIANTS.get("adalora") is AdaLoRA
    assert AdaLoRA.name == "adalora" and AdaLoRA.mergeable


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_runs_on_every_tiny_architecture(arch):
    model = tiny_model(arch)
    head_before = [p.detach().clone() for p in head_parameters(model)]
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    variant = AdaLoRA(AdaLoRAConfig(init_r=4, target_r=2, targets="query,value", t_init=2, t_final=2, delta_t=1))
    variant.apply(model, None)
    assert len(variant.layers) == 4  # query and value of 2 blocks
    assert all(p.requires_grad for p in head_parameters(model))
    state = train_tiny(variant, model, total_steps=8)
    assert math.isfinite(state.loss.item())
    described = variant.describe(model)
    ranks = described["ranks"]
    assert sum(ranks.values()) == 2 * 4  # target_r * number of adapted matrices
    assert described["budget"][0] == [0, 16] and described["budget"][-1] == [8, 8]
    assert state.log[BUDGET_LOG_KEY] == 8
    for layer in variant.layers.values():  # masked singular values stay zero in the final phase
        assert torch.all(layer.lora_lambda[~layer.rank_mask] == 0)
    assert any(not torch.equal(b, a) for b, a in zip(head_before, head_parameters(model))), "head not trained"
    for name, p in model.named_parameters():  # the backbone stays frozen (now under <target>.base.weight)
        original = name.replace(".base.", ".")
        if not p.requires_grad and original in frozen_before:
            assert torch.equal(p, frozen_before[original]), name


def test_budget_history_and_log_during_decrease():
    model = tiny_model("bert")
    variant = AdaLoRA(AdaLoRAConfig(init_r=4, target_r=2, targets="query,value", t_init=0.2, t_final=0.2, delta_t=1))
    variant.apply(model, None)
    train_tiny(variant, model, total_steps=10)
    history = variant.describe(model)["budget"]
    steps = [s for s, _ in history]
    budgets = [b for _, b in history]
    assert steps == sorted(steps) and budgets == sorted(budgets, reverse=True)
    assert budgets[0] == 16 and budgets[-1] == 8
    # the first change comes right after the warm-up of 0.2 * 10 = 2 steps
    assert history[1][0] == 3
    assert variant.describe(model)["schedule_steps"] == {"t_init": 2, "t_final": 2, "delta_t": 1,
                                                          "total_steps": 10}


def test_merge_keeps_logits():
    model = tiny_model("roberta")
    variant = AdaLoRA(AdaLoRAConfig(init_r=4, target_r=2, targets="query,value", t_init=1, t_final=1))
    variant.apply(model, None)
    train_tiny(variant, model, total_steps=4)
    batch = tiny_batch()
    with torch.no_grad():
        before = model(**batch).logits
        variant.merge(model)
        merged = model(**batch).logits
        variant.unmerge(model)
        after = model(**batch).logits
    assert any(layer.lora_lambda.abs().sum() > 0 for layer in variant.layers.values())
    assert torch.allclose(before, merged, atol=1e-5) and torch.allclose(before, after, atol=1e-5)


def test_extra_loss_is_the_mean_of_matrix_penalties():
    model = tiny_model("bert")
    variant = AdaLoRA(AdaLoRAConfig(init_r=4, target_r=2, targets="query,value", orth_reg_weight=0.5))
    variant.apply(model, None)
    state = TrainState(model=model, optimizer=None, step=0, total_steps=10)
    penalties = [alloc.orthogonality_penalty(layer.lora_P, layer.lora_Q) for layer in variant.layers.values()]
    # at init P^T P ~ 0 and Q Q^T ~ 0, so each norm is about sqrt(r) = 2
    assert variant.extra_loss(state).item() == pytest.approx(0.5 * sum(penalties).item() / 8, rel=1e-6)
    assert variant.extra_loss(state).item() == pytest.approx(0.5 * 2.0, rel=0.05)
    assert AdaLoRA(AdaLoRAConfig(orth_reg_weight=0)).extra_loss(state) is None


def test_validate_schedule_names_values_and_total():
    variant = AdaLoRA(AdaLoRAConfig(t_init=6, t_final=4))
    with pytest.raises(UserError, match=r"t_init=6 \(6 steps\).*t_final=4 \(4 steps\).*10 total steps"):
        variant.validate_schedule(10)
    variant.validate_schedule(11)
    with pytest.raises(UserError, match=r"t_init=0\.5 \(2 steps\).*t_final=0\.5 \(2 steps\).*4 total steps"):
        AdaLoRA(AdaLoRAConfig(t_init=0.5, t_final=0.5)).validate_schedule(4)


@pytest.mark.parametrize("overrides, bad", [
    ({"target_r": 16}, "target_r=16"), ({"init_r": 0}, "init_r=0"), ({"beta1": 1.0}, "beta1=1.0"),
    ({"delta_t": 0}, "delta_t=0"), ({"t_init": 2.5}, "t_init=2.5"), ({"orth_reg_weight": -1.0}, "orth_reg_weight"),
])
def test_bad_config_raises_user_error(overrides, bad):
    with pytest.raises(UserError, match=bad.replace(".", r"\.")):
        AdaLoRA(AdaLoRAConfig(**overrides))


# ---- equality with PEFT's RankAllocator ----------------------------------------------------------------------

peft = pytest.importorskip("peft")


def _peft_adalora(model, **kw):
    from peft.tuners.adalora import AdaLoraConfig, AdaLoraModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = AdaLoraConfig(target_modules=["query", "value"], lora_alpha=8, **kw)
        return AdaLoraModel(model, config, "default")


@pytest.mark.parametrize("total, t_init, t_final, delta_t", [(20, 3, 5, 2), (37, 0, 0, 1), (50, 10, 15, 4)])
def test_schedule_equals_peft(total, t_init, t_final, delta_t):
    tuner = _peft_adalora(tiny_model("bert"), init_r=6, target_r=2, tinit=t_init, tfinal=t_final, deltaT=delta_t,
                          total_step=total)
    ra = tuner.rankallocator
    assert (ra.init_bgt, ra.target_bgt) == (24, 8)
    for step in range(0, total + 1):
        ours = alloc.budget_schedule(step, init_budget=24, target_budget=8, t_init=t_init, t_final=t_final,
                                     total_steps=total, delta_t=delta_t)
        assert ours == ra.budget_schedule(step), step


def test_masking_decisions_equal_peft():
    """Same P, lambda, Q and gradients in both; compare importance, masks and singular values at every step."""
    total, t_init, t_final, delta_t = 12, 2, 3, 2
    ours_model = tiny_model("bert")
    peft_model = copy.deepcopy(ours_model)
    variant = AdaLoRA(AdaLoRAConfig(init_r=4, target_r=2, targets="query,value", alpha=8.0, t_init=t_init, t_final=t_final,
                                    delta_t=delta_t))
    variant.apply(ours_model, None)
    tuner = _peft_adalora(peft_model, init_r=4, target_r=2, tinit=t_init, tfinal=t_final, deltaT=delta_t,
                          total_step=total)
    pairs = []  # (our layer, peft layer)
    for name, layer in variant.layers.items():
        theirs = peft_model.get_submodule(name)
        with torch.no_grad():
            layer.lora_lambda.normal_()
            theirs.lora_A["default"].copy_(layer.lora_Q)
            theirs.lora_B["default"].copy_(layer.lora_P)
            theirs.lora_E["default"].copy_(layer.lora_lambda[:, None])
        pairs.append((name, layer, theirs))

    # identical outputs to start with: the same update in both parameterisations and scalings
    batch = tiny_batch()
    with torch.no_grad():
        assert torch.allclose(ours_model(**batch).logits, peft_model(**batch).logits, atol=1e-5)

    state = TrainState(model=ours_model, optimizer=None, step=0, total_steps=total)
    variant.on_train_start(state)
    g = torch.Generator().manual_seed(1)
    masked_steps = 0
    for step in range(1, total + 1):
        for _, layer, theirs in pairs:  # the same "optimizer update" and gradients in both models
            for ours_p, theirs_p in ((layer.lora_Q, theirs.lora_A["default"]), (layer.lora_P, theirs.lora_B["default"]),
                                     (layer.lora_lambda, theirs.lora_E["default"])):
                noise = 0.1 * torch.randn(ours_p.shape, generator=g)
                # smaller gradients on lambda so that the P and Q terms of the triplet score decide the ranking
                grad = torch.randn(ours_p.shape, generator=g) * (0.1 if ours_p is layer.lora_lambda else 1.0)
                with torch.no_grad():
                    ours_p.add_(noise)
                    theirs_p.add_(noise.view_as(theirs_p))
                ours_p.grad = grad.clone()
                theirs_p.grad = grad.view_as(theirs_p).clone()
        variant.on_optimizer_step(state)
        tuner.update_and_allocate(step)
        ra = tuner.rankallocator
        for name, layer, theirs in pairs:
            assert torch.allclose(layer.lora_lambda, theirs.lora_E["default"].view(-1), atol=1e-6), (step, name)
            if step < total - t_final:  # PEFT resets its averages once the pattern is fixed
                for part, peft_name in (("lambda", "lora_E"), ("P", "lora_B"), ("Q", "lora_A")):
                    key = f"{name}.{peft_name}.default"
                    ours_ipt = variant.allocator.ipt_avg[(name, part)]
                    ours_unc = variant.allocator.unc_avg[(name, part)]
                    assert torch.allclose(ours_ipt, ra.exp_avg_ipt[key].view_as(ours_ipt), atol=1e-6)
                    assert torch.allclose(ours_unc, ra.exp_avg_unc[key].view_as(ours_unc), atol=1e-6)
        pattern = tuner.peft_config["default"].rank_pattern
        if pattern is not None:  # both hold the latest mask, updated at the same steps
            for name, layer, _ in pairs:
                assert layer.rank_mask.tolist() == pattern[f"{name}.lora_E.default"], (step, name)
        budget, mask_now = variant.allocator.schedule(step)
        if mask_now or step == total - t_final:
            masked_steps += 1
            # the threshold splits the scores: kept above, masked at or below, and the budget is met
            scores = torch.cat(list(variant.allocator.scores().values()))
            kept = torch.cat([layer.rank_mask for _, layer, _ in pairs])
            assert int(kept.sum()) == budget, step
            assert torch.all(scores[kept] > variant.allocator.last_threshold)
            assert torch.all(scores[~kept] <= variant.allocator.last_threshold)
    assert masked_steps >= 6
    assert sum(layer.rank for _, layer, _ in pairs) == 2 * 4
    assert len({layer.rank for _, layer, _ in pairs}) > 1, "the budget should be re-allocated unevenly"


def test_defaults_follow_the_official_scripts_at_the_papers_main_budget():
    c = AdaLoRAConfig()
    assert (c.init_r, c.target_r, c.alpha, c.orth_reg_weight) == (4, 2, 16.0, 0.1)
    assert c.targets == "query,key,value,attn_out,ffn_in,ffn_out"
    assert (c.t_init, c.t_final) == (0.12, 0.44)  # 6000 and 22000 of 50,520 steps


def test_lambda_is_weight_decayed_like_the_official_trainer():
    model = tiny_model("bert")
    variant = AdaLoRA(AdaLoRAConfig(init_r=4, target_r=2, targets="query,value"))
    variant.apply(model, None)
    groups = variant.param_groups(model, 1e-3, 0.01)
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.01 for p in g["params"]}
    for layer in variant.layers.values():
        assert id(layer.lora_lambda) in decayed and id(layer.lora_P) in decayed
    head_bias = [p for p in head_parameters(model) if p.ndim == 1]
    assert head_bias and all(id(p) not in decayed for p in head_bias)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)


def test_deployed_parameters_count_the_final_budget():
    model = tiny_model("bert")  # hidden 32: query and value are 32 x 32
    variant = AdaLoRA(AdaLoRAConfig(init_r=4, target_r=2, targets="query,value", t_init=2, t_final=2))
    variant.apply(model, None)
    assert variant.deployed_parameters(model, None) == 4 * 4 * (32 + 32 + 1)  # before masking: init rank
    train_tiny(variant, model, total_steps=8)
    assert variant.deployed_parameters(model, None) == 2 * 4 * (32 + 32 + 1)  # target_r * matrices
