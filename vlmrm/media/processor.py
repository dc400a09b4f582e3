"""What the Qwen-VL processors need to know about frames vlmrm has already sampled and resized."""

from __future__ import annotations

from transformers import ProcessorMixin


def image_factor(processor: ProcessorMixin) -> int:
    """The pixel edge of one merged visual token (qwen-vl-utils' ``IMAGE_FACTOR``): patch 14 x merge 2
    = 28 for Qwen2/2.5-VL, 16 x 2 = 32 for Qwen3-VL. Frame and image sides are multiples of it."""
    video_processor = processor.video_processor
    return int(video_processor.patch_size * video_processor.merge_size)


def video_kwargs(videos: list) -> dict:
    """Processor arguments for already sampled, resized ``DecodedVideo`` s: no second sampling or
    resize by the processor, and each video's metadata (Qwen3-VL writes frame times from it)."""
    return {
        "videos": [v.frames for v in videos],
        "videos_kwargs": {
            "do_sample_frames": False,
            "do_resize": False,
            "video_metadata": [v.metadata() for v in videos],
        },
    }


def processor_video_inputs(processor: ProcessorMixin, texts: list[str], videos: list):
    """Processor batch of texts with their videos (:func:`video_kwargs`), padded."""
    return processor(text=texts, padding=True, return_tensors="pt", **video_kwargs(videos))
