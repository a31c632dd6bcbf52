"""adapterbench: which adapter method should I use, and what does it cost?

A benchmark suite for parameter-efficient fine-tuning variants. One registry of variants and tasks, one
training/evaluation loop held constant for every variant, self-describing run records and reports.
"""

__version__ = "0.1.0"
