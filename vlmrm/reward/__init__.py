"""The reward-model task: pair losses and metrics, prompt templates, the pair collator, the
``RewardTrainer``, training, evaluation, scoring and the report.
"""
