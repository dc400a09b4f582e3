"""Backbone families (one table), the reward model built on them, and its loading."""

from vlmrm.models.builder import build_reward_model, load_reward_model
from vlmrm.models.families import FAMILIES, ModelFamily, TinySpec, family_for
from vlmrm.models.reward_model import RewardOutput, RewardSpec, reward_model_class

__all__ = [
    "FAMILIES",
    "ModelFamily",
    "RewardOutput",
    "RewardSpec",
    "TinySpec",
    "build_reward_model",
    "family_for",
    "load_reward_model",
    "reward_model_class",
]
