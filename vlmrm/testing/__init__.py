"""Shared fixtures that are real data and real models: tiny random-weight Qwen-VL checkpoints and
synthetic video / image / VTG generators with a learnable rule.
"""
