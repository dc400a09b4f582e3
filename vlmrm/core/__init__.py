"""Shared base layer: configuration loading (typed dataclasses from YAML, one override grammar, one
path rule) and data problems as values. Imports nothing else of vlmrm.
"""
