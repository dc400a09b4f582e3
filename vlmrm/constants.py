"""Named constants of the Qwen-VL preprocessing conventions vlmrm follows.

Values mirror qwen-vl-utils (``vision_process.py``) and the Qwen2-VL paper; see
``reward_math.md`` ("Video frames"). Per-family values that differ (Qwen3-VL uses 16-pixel
patches) are read from the processor at run time, not from here.
"""

QWEN2_PATCH_SIZE = 14
"""ViT patch edge in pixels for Qwen2-VL / Qwen2.5-VL."""

SPATIAL_MERGE_SIZE = 2
"""The merger fuses 2x2 neighbouring patches into one LLM token."""

QWEN2_IMAGE_FACTOR = QWEN2_PATCH_SIZE * SPATIAL_MERGE_SIZE
"""Frame height and width are rounded to multiples of 28 = patch 14 x merge 2."""

FRAME_FACTOR = 2
"""Temporal patch size: frames are grouped in pairs, so frame counts are multiples of 2."""

DEFAULT_VIDEO_FPS = 2.0
"""qwen-vl-utils' default sampling rate (frames per second of video)."""

FPS_MIN_FRAMES = 4
"""Fewest frames qwen-vl-utils samples from a video when sampling by fps."""

FPS_MAX_FRAMES = 768
"""Most frames qwen-vl-utils samples from a video when sampling by fps."""

VIDEO_MIN_TOKENS_PER_FRAME = 128
"""qwen-vl-utils' lower bound on visual tokens per frame (min pixels = 128 x 28 x 28)."""

DEFAULT_MAX_FRAME_PIXELS = 448 * 448
"""VideoAlign's default ``max_frame_pixels`` (200704): 256 visual tokens per pair of frames."""

DEFAULT_MIN_FRAME_PIXELS = VIDEO_MIN_TOKENS_PER_FRAME * QWEN2_IMAGE_FACTOR**2
"""qwen-vl-utils' default ``min_pixels`` for video frames (100352)."""

LABEL_VALUES = {"A": 1, "B": -1, "same": 0}
"""Preference label in the CSV -> y: +1 A better, -1 B better, 0 tie (reward_math.md, "Labels")."""

IMAGE_PAIR_SUFFIXES = (".jsonl", ".json")
"""Data files with these suffixes hold JSONL image pairs; anything else is a CSV of video pairs."""
