"""Generation engines for GRM rejection sampling: one interface, ``generate(requests) -> texts``.

The sampler only needs text out for a batch of (instruction, two visuals) requests, so the engine
is that one method. This keeps the HF and vLLM paths interchangeable and lets tests drive the
sampler with an object returning canned generations, without a model.

Both engines render the same chat: one user turn holding the two visuals in the order shown, then
the filled instruction (the layout the GRM SFT data uses: ``images`` listed first to last, then the
human text), with the generation prompt appended.

Videos arrive decoded by ``vlmrm.media.video`` (frames sampled at ``--video_fps`` and resized to the
patch grid), so the HF video processor is told not to sample or resize again, as in
``vlmrm.reward.collator``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, ProcessorMixin

from vlmrm.media.processor import image_factor, processor_video_inputs

EngineName = Literal["hf", "vllm"]
ENGINES: tuple[EngineName, ...] = ("hf", "vllm")
VISUALS_PER_REQUEST = 2
"""A GRM judges a pair: two images or two videos per prompt."""


@dataclass
class Request:
    """One pair to judge: the filled instruction and the two visuals in the order shown."""

    sample_id: str
    instruction: str
    media: Literal["image", "video"]
    visuals: list  # PIL images or DecodedVideo, shown order


class Engine(Protocol):
    """Anything that turns a batch of requests into one generated text per request, in order."""

    def generate(self, requests: list[Request]) -> list[str]: ...


def chat_text(processor: ProcessorMixin, request: Request) -> str:
    """The rendered chat (visual placeholders, instruction, generation prompt) for one request."""
    content = [{"type": request.media} for _ in request.visuals]
    content.append({"type": "text", "text": request.instruction})
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@dataclass
class GenerationSettings:
    """Decoding options shared by both engines; ``temperature == 0`` is greedy."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


class HFEngine:
    """``AutoModelForImageTextToText.generate`` on left-padded batches, one processor call per media."""

    def __init__(self, model_path: str, settings: GenerationSettings, device: str | None = None):
        self.settings = settings
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.processor.tokenizer.padding_side = "left"  # generation appends on the right
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=dtype).to(device).eval()
        torch.manual_seed(settings.seed)  # sampled decoding is reproducible for one run

    @property
    def image_factor(self) -> int:
        return image_factor(self.processor)

    def _inputs(self, requests: list[Request]) -> dict:
        texts = [chat_text(self.processor, r) for r in requests]
        visuals = [v for r in requests for v in r.visuals]
        if requests[0].media == "image":
            return self.processor(text=texts, images=visuals, padding=True, return_tensors="pt")
        return processor_video_inputs(self.processor, texts, visuals)

    @torch.no_grad()
    def generate(self, requests: list[Request]) -> list[str]:
        texts: list[str | None] = [None] * len(requests)
        for media in ("image", "video"):
            indices = [i for i, r in enumerate(requests) if r.media == media]
            if not indices:
                continue
            inputs = self._inputs([requests[i] for i in indices]).to(self.model.device)
            sampling = {} if self.settings.greedy else {"temperature": self.settings.temperature}
            generated = self.model.generate(
                **inputs,  # keeps mm_token_type_ids: transformers 5 builds M-RoPE positions from it
                max_new_tokens=self.settings.max_new_tokens,
                do_sample=not self.settings.greedy,
                top_p=self.settings.top_p if not self.settings.greedy else None,
                **sampling,
            )
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]  # (b, generated length)
            decoded = self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for i, text in zip(indices, decoded):
                texts[i] = text
        return texts


VLLM_PACKAGE = "vllm"


def vllm_missing_message() -> str:
    return (
        f"--engine vllm needs the '{VLLM_PACKAGE}' package, which is not installed in this environment "
        f"(pip install {VLLM_PACKAGE}); or run with --engine hf (transformers generate, no extra package)"
    )


class VLLMEngine:
    """vLLM offline inference with tensor parallelism; only constructible when vLLM is installed."""

    def __init__(
        self,
        model_path: str,
        settings: GenerationSettings,
        tensor_parallel_size: int,
        gpu_memory_utilization: float,
    ):
        if importlib.util.find_spec(VLLM_PACKAGE) is None:
            raise ImportError(vllm_missing_message())
        from vllm import LLM, SamplingParams

        self.processor = AutoProcessor.from_pretrained(model_path)
        self.llm = LLM(
            model=model_path,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            seed=settings.seed,
            limit_mm_per_prompt={"image": VISUALS_PER_REQUEST, "video": VISUALS_PER_REQUEST},
        )
        self.sampling = SamplingParams(
            max_tokens=settings.max_new_tokens,
            temperature=max(settings.temperature, 0.0),
            top_p=settings.top_p,
            seed=settings.seed,
        )

    @property
    def image_factor(self) -> int:
        return image_factor(self.processor)

    def generate(self, requests: list[Request]) -> list[str]:
        prompts = [
            {"prompt": chat_text(self.processor, r), "multi_modal_data": {r.media: _vllm_visuals(r)}}
            for r in requests
        ]
        outputs = self.llm.generate(prompts, self.sampling, use_tqdm=False)
        return [output.outputs[0].text for output in outputs]


def _vllm_visuals(request: Request) -> list:
    """PIL images as they are; videos as (T, H, W, 3) uint8 arrays with their frame metadata."""
    if request.media == "image":
        return request.visuals
    return [(v.frames.permute(0, 2, 3, 1).numpy(), v.metadata()) for v in request.visuals]


def build_engine(
    name: EngineName,
    model_path: str,
    settings: GenerationSettings,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
) -> HFEngine | VLLMEngine:
    """The engine named by ``--engine``; the vLLM options only apply to vLLM."""
    if name == "hf":
        return HFEngine(model_path, settings)
    if name == "vllm":
        return VLLMEngine(model_path, settings, tensor_parallel_size, gpu_memory_utilization)
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
