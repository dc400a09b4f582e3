"""Shared preference-pair data: the CSV video-pair and JSONL image-pair formats, their labels,
readers, datasets and validation (used by the reward-model and GRM tasks).
"""
