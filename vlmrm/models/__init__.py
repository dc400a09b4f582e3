"""Backbone families: the per-family table and its lookup."""

from vlmrm.models.families import FAMILIES, ModelFamily, TinySpec, family_for

__all__ = ["FAMILIES", "ModelFamily", "TinySpec", "family_for"]
