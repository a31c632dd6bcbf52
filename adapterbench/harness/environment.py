"""Where a run ran: versions, device, the project's commit, and the fingerprint that decides whether two runs'
speed and memory can be compared."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import adapterbench
from adapterbench.harness.records import settings_hash

_ENVIRONMENT: dict[str, Any] | None = None


def environment(device: str | None = None, precision: str | None = None) -> dict[str, Any]:
    """Versions, device and the project's git commit; ``device`` (e.g. "cuda:1") picks the GPU named.

    ``fingerprint`` is what makes speed and memory comparable between two runs: the device model, the thread
    count, the precision and the versions of the libraries that do the arithmetic; ``fingerprint.id`` hashes it.
    """
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        import transformers

        try:  # the installed version, without importing peft (seconds per run for variants that never use it)
            peft_version = importlib.metadata.version("peft")
        except importlib.metadata.PackageNotFoundError:
            peft_version = None
        cuda = torch.cuda.is_available()
        commit, dirty = git_state(Path(adapterbench.__file__).resolve().parent.parent)
        _ENVIRONMENT = {
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft_version,
            "adapterbench": adapterbench.__version__, "platform": platform.platform(),
            "device_name": cpu_name(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cuda": torch.version.cuda if cuda else None,
            "git_commit": commit, "git_dirty": dirty, "argv": sys.argv[1:],
        }
    env = dict(_ENVIRONMENT)
    if device and device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    env["fingerprint"] = environment_fingerprint(env, precision)
    return env


def environment_fingerprint(env: dict[str, Any], precision: str | None) -> dict[str, Any]:
    fingerprint = {"device_name": env.get("device_name"), "torch_threads": env.get("torch_threads"),
                   "cpu_count": env.get("cpu_count"), "torch": env.get("torch"),
                   "transformers": env.get("transformers"), "peft": env.get("peft"), "precision": precision}
    fingerprint["id"] = settings_hash(fingerprint)
    return fingerprint


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state(folder: Path) -> tuple[str | None, bool | None]:
    """The project's commit and whether its tracked files have changes (None outside a checkout)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None
