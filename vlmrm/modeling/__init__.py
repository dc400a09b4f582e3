"""Shared model layer: the per-family table, the reward model (backbone + head), reward-checkpoint
loading, trainable groups / LoRA, and the generation models of the text-answering tasks.
"""
