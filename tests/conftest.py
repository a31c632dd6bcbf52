"""Test-wide settings.

Tiny models run fastest on one thread; more threads only add OpenMP synchronisation, and on a loaded 2-core
machine (CI, or several pytest processes) oversubscription makes every small matmul orders of magnitude slower.
"""

import os

import torch

torch.set_num_threads(1)
os.environ.setdefault("ADAPTERBENCH_PROGRESS", "0")
