"""Preference data: CSV video pairs, frame decoding, prompt templates, collation, validation."""

from vlmrm.data.collator import PairCollator, frame_factor
from vlmrm.data.problems import DataValidationError, Problem
from vlmrm.data.templates import PROMPT_TEMPLATES, build_prompt, register_template
from vlmrm.data.video import FrameSampling, load_video, resolve_backend, sample_frame_indices
from vlmrm.data.video_pairs import VideoPairDataset, read_video_pair_csv

__all__ = [
    "PROMPT_TEMPLATES",
    "DataValidationError",
    "FrameSampling",
    "PairCollator",
    "Problem",
    "VideoPairDataset",
    "build_prompt",
    "frame_factor",
    "load_video",
    "read_video_pair_csv",
    "register_template",
    "resolve_backend",
    "sample_frame_indices",
]
