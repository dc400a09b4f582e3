"""Generative reward models (GRM): a Qwen-VL model that writes its judgement of a pair as text."""
