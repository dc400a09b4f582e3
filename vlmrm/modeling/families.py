"""The one table of per-family differences between the supported Qwen-VL backbones.

Everything that changes between Qwen2-VL, Qwen2.5-VL and Qwen3-VL lives here, keyed by the
Hugging Face `config.model_type`, so that the rest of vlmrm never branches on a model name.
A checkpoint is loaded with `from_pretrained(path)`; its `config.model_type` picks the row.

`ModelFamily` holds facts that are true of the released checkpoints. The sizes of the
random-weight test checkpoints built by `vlmrm.tiny` are kept apart in `TinySpec`, so nothing
downstream mistakes a test size for a property of the real models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)
from transformers.utils.constants import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
)

from vlmrm.media.sampling import (
    SPATIAL_MERGE_SIZE,
    TEMPORAL_PATCH_SIZE,
    default_max_frame_pixels,
    default_min_frame_pixels,
    default_total_pixels,
)
from vlmrm.modeling.chat_templates import QWEN2_VL_CHAT_TEMPLATE, QWEN3_VL_CHAT_TEMPLATE

RGB = tuple[float, float, float]

# Width of the tiny text decoder; vision towers must project into it.
_TINY_TEXT_HIDDEN = 128


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the random-weight test checkpoint of one family (see `vlmrm.tiny`).

    Text sizes are shared field names because the text config classes agree on them; the vision
    config classes do not (Qwen2-VL calls its width `embed_dim` and its merger output
    `hidden_size`, the later families call them `hidden_size` and `out_hidden_size`), so the
    vision part is the literal keyword arguments for that family's vision config class.

    Args:
        chat_template: jinja chat template written into the tiny tokenizer and processor.
        vision_kwargs: keyword arguments for the family's vision config class. Its output width
            must equal `hidden_size`, because the patch merger projects into the text stream.
        rope_parameters: text `rope_parameters`; `mrope_section` must sum to head_dim / 2.
        hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
        intermediate_size: text decoder sizes.
        min_tokens_per_frame, max_tokens_per_frame: pixel bounds of the processor, expressed in
            LLM tokens per image or video frame (one token = (patch_size * merge) ** 2 pixels),
            so 56x56 / 64x64 test frames keep their size (4 tokens) and larger frames shrink.
        max_video_frames: frame count the clip-wide video budget is sized for (only used by
            families whose video pixel bounds cover the whole clip).
    """

    chat_template: str
    vision_kwargs: Mapping[str, object]
    rope_parameters: Mapping[str, object]
    hidden_size: int = _TINY_TEXT_HIDDEN
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 256
    min_tokens_per_frame: int = 4
    max_tokens_per_frame: int = 16
    max_video_frames: int = 64

    def __post_init__(self) -> None:
        # M-RoPE rotates head_dim / 2 frequency pairs split over (t, h, w); a wrong sum only
        # fails deep inside the first forward, so catch it here.
        section = self.rope_parameters.get("mrope_section", ())
        if sum(section) != self.head_dim // 2:
            raise ValueError(f"mrope_section {section} must sum to head_dim / 2 = {self.head_dim // 2}.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass(frozen=True)
class ModelFamily:
    """What differs between Qwen-VL families, as facts about their released checkpoints.

    Args:
        model_type: Hugging Face `config.model_type`, the key of `FAMILIES`.
        config_class, model_class, processor_class, image_processor_class,
        video_processor_class: the transformers classes that make up a checkpoint.
        patch_size: side of one ViT patch in pixels; images are resized to multiples of
            `patch_size * spatial_merge_size`.
        image_mean, image_std: normalisation the vision tower was trained with.
        video_size_per_clip: True where the video processor's `size` bounds count the pixels of
            the whole clip (frames x height x width, Qwen3-VL) rather than of one frame.
        frame_timestamps: True where the processor writes `<t seconds>` text before each
            temporal patch of a video (Qwen3-VL), so video prompts carry extra text tokens.
        merger_modules: children of `model.visual` that project vision features into the LLM
            (trained with `merger_lr`, kept trainable by `tune_merger`).
        tiny: sizes of the random-weight test checkpoint (`vlmrm.tiny`), not of any real model.
    """

    model_type: str
    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    processor_class: type[ProcessorMixin]
    image_processor_class: type
    video_processor_class: type
    patch_size: int
    image_mean: RGB
    image_std: RGB
    video_size_per_clip: bool
    frame_timestamps: bool
    tiny: TinySpec
    merger_modules: tuple[str, ...] = ("merger",)
    spatial_merge_size: int = SPATIAL_MERGE_SIZE
    temporal_patch_size: int = TEMPORAL_PATCH_SIZE

    @property
    def image_factor(self) -> int:
        """The pixel edge of one merged token (patch x spatial merge): frame sides are multiples of
        it, and ``image_factor ** 2`` pixels of a frame become one LLM token."""
        return self.patch_size * self.spatial_merge_size

    @property
    def video_pixel_defaults(self) -> dict[str, float]:
        """qwen-vl-utils' per-frame video bounds and whole-video budget for this family (its limits
        are tokens x factor^2): what ``min_frame_pixels`` / ``total_pixels`` left unset resolve to."""
        factor = self.image_factor
        return {
            "min_pixels": default_min_frame_pixels(factor),
            "max_pixels": default_max_frame_pixels(factor),
            "total_pixels": default_total_pixels(factor),
        }


# Tiny text decoder: head_dim 128 / 4 = 32, so M-RoPE splits 16 rotary frequencies. Qwen2/2.5-VL
# use contiguous [temporal, height, width] blocks; Qwen3-VL interleaves them (T gets the rest).
_TINY_MROPE_CONTIGUOUS = (4, 6, 6)
_TINY_MROPE_INTERLEAVED = (6, 5, 5)
_TINY_VISION_WIDTH = 64
_TINY_VISION_DEPTH = 2
_TINY_VISION_HEADS = 4
_TINY_VISION_MLP = 4 * _TINY_VISION_WIDTH

FAMILIES: dict[str, ModelFamily] = {
    "qwen2_vl": ModelFamily(
        model_type="qwen2_vl",
        config_class=Qwen2VLConfig,
        model_class=Qwen2VLForConditionalGeneration,
        processor_class=Qwen2VLProcessor,
        image_processor_class=Qwen2VLImageProcessor,
        video_processor_class=Qwen2VLVideoProcessor,
        patch_size=14,
        image_mean=tuple(OPENAI_CLIP_MEAN),
        image_std=tuple(OPENAI_CLIP_STD),
        video_size_per_clip=False,
        frame_timestamps=False,
        tiny=TinySpec(
            chat_template=QWEN2_VL_CHAT_TEMPLATE,
            vision_kwargs=MappingProxyType(
                {
                    "depth": _TINY_VISION_DEPTH,
                    "embed_dim": _TINY_VISION_WIDTH,
                    "num_heads": _TINY_VISION_HEADS,
                    "mlp_ratio": _TINY_VISION_MLP // _TINY_VISION_WIDTH,
                    "hidden_size": _TINY_TEXT_HIDDEN,
                }
            ),
            rope_parameters=MappingProxyType(
                {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": _TINY_MROPE_CONTIGUOUS}
            ),
        ),
    ),
    "qwen2_5_vl": ModelFamily(
        model_type="qwen2_5_vl",
        config_class=Qwen2_5_VLConfig,
        model_class=Qwen2_5_VLForConditionalGeneration,
        processor_class=Qwen2_5_VLProcessor,
        image_processor_class=Qwen2VLImageProcessor,
        video_processor_class=Qwen2VLVideoProcessor,
        patch_size=14,
        image_mean=tuple(OPENAI_CLIP_MEAN),
        image_std=tuple(OPENAI_CLIP_STD),
        video_size_per_clip=False,
        frame_timestamps=False,
        tiny=TinySpec(
            chat_template=QWEN2_VL_CHAT_TEMPLATE,
            vision_kwargs=MappingProxyType(
                {
                    "depth": _TINY_VISION_DEPTH,
                    "hidden_size": _TINY_VISION_WIDTH,
                    "intermediate_size": _TINY_VISION_MLP,
                    "num_heads": _TINY_VISION_HEADS,
                    "out_hidden_size": _TINY_TEXT_HIDDEN,
                    # Like the real models, windowed attention except in the last block.
                    "fullatt_block_indexes": [_TINY_VISION_DEPTH - 1],
                }
            ),
            rope_parameters=MappingProxyType(
                {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": _TINY_MROPE_CONTIGUOUS}
            ),
        ),
    ),
    "qwen3_vl": ModelFamily(
        model_type="qwen3_vl",
        config_class=Qwen3VLConfig,
        model_class=Qwen3VLForConditionalGeneration,
        processor_class=Qwen3VLProcessor,
        image_processor_class=Qwen2VLImageProcessor,
        video_processor_class=Qwen3VLVideoProcessor,
        patch_size=16,
        image_mean=tuple(IMAGENET_STANDARD_MEAN),
        image_std=tuple(IMAGENET_STANDARD_STD),
        video_size_per_clip=True,
        frame_timestamps=True,
        # DeepStack feeds features of intermediate ViT blocks into the LLM through extra mergers.
        merger_modules=("merger", "deepstack_merger_list"),
        tiny=TinySpec(
            chat_template=QWEN3_VL_CHAT_TEMPLATE,
            vision_kwargs=MappingProxyType(
                {
                    "depth": _TINY_VISION_DEPTH,
                    "hidden_size": _TINY_VISION_WIDTH,
                    "intermediate_size": _TINY_VISION_MLP,
                    "num_heads": _TINY_VISION_HEADS,
                    "out_hidden_size": _TINY_TEXT_HIDDEN,
                    # One DeepStack tap (real models tap 3 of 27 blocks); it feeds text layer 0.
                    "deepstack_visual_indexes": [0],
                    # Learned position grid of 8x8, bilinearly resampled to each image's grid.
                    "num_position_embeddings": 64,
                }
            ),
            rope_parameters=MappingProxyType(
                {
                    "rope_type": "default",
                    "rope_theta": 5_000_000.0,
                    "mrope_section": _TINY_MROPE_INTERLEAVED,
                    "mrope_interleaved": True,
                }
            ),
        ),
    ),
}


def family_for(model_type_or_config: str | PretrainedConfig) -> ModelFamily:
    """Look up the family row of a model type name or of a loaded config.

    Args:
        model_type_or_config: a `config.model_type` string such as "qwen2_vl", or a config
            object (its `model_type` is used).

    Returns:
        The matching `ModelFamily`.

    Raises:
        ValueError: for model types vlmrm does not support, listing the supported ones.
    """
    model_type = (
        model_type_or_config
        if isinstance(model_type_or_config, str)
        else getattr(model_type_or_config, "model_type", None)
    )
    if model_type not in FAMILIES:
        raise ValueError(
            f"Unsupported model type {model_type!r}; vlmrm supports: {', '.join(sorted(FAMILIES))}."
        )
    return FAMILIES[model_type]
