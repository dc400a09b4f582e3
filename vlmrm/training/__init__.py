"""Shared training layer: run management every task's trainer mixes in (checkpoint markers,
``resume_from_checkpoint: latest``, the non-finite-loss guard, ``experiment_name``), callbacks,
distributed set-up and the target-token SFT pieces of the generation tasks.
"""
