"""What a VTG model is shown and what it answers.

The clip is given as its sampled frames, each an image followed by its time (:func:`frame_label`:
"t=2.5s", "t=0.25" or a temporal token), then the question. Time after image: under causal attention the time's tokens can read their frame, so an
answer can find "the time whose frame shows the event" in one look. Frames as images (not a video input) because TRL's GRPO passes images through generation
and the policy loss, not videos, and SFT, GRPO and evaluation must see the same input; the explicit
times give every family (Qwen2-VL has no frame timestamps of its own) the clock the answer refers to.
The answer is the segment written by the run's :mod:`vlmrm.vtg.time_encoding` encoding.
"""

from __future__ import annotations

from PIL import Image

from vlmrm.vtg.time_encoding import RelativeEncoding, SecondsEncoding, TemporalEncoding, TemporalTokenEncoding

FRAME_TIME = "t={:.1f}s"
FRAME_FRACTION = "t={:.2f}"
ANSWER_FORMATS = {
    SecondsEncoding: 'Answer as "from <start> to <end> seconds".',
    RelativeEncoding: 'Answer as "from <start> to <end>" in fractions of the video (0 = start, 1 = end).',
    TemporalTokenEncoding: "Answer with two time tokens <start><end> (<0> = start, the last token = end).",
}


def question(sentence: str, duration: float, encoding: TemporalEncoding) -> str:
    return (
        f"The video lasts {duration:.1f} seconds. When does this happen: {sentence.strip()}? "
        f"{ANSWER_FORMATS[type(encoding)]}"
    )


def frame_label(encoding: TemporalEncoding, time: float, duration: float) -> str:
    """The time written after a frame, in the answer's own terms, so an answer can point at the label
    of the frame where the event starts (temporal tokens: the very token to answer with)."""
    if isinstance(encoding, TemporalTokenEncoding):
        return f"<{encoding.index(time, duration)}>"
    if isinstance(encoding, RelativeEncoding):
        return FRAME_FRACTION.format(time / duration)
    return FRAME_TIME.format(time)


def frame_images(clip) -> list[Image.Image]:
    """The clip's (T, 3, H, W) uint8 frames as RGB images, in order."""
    return [Image.fromarray(frame.permute(1, 2, 0).contiguous().numpy()) for frame in clip.frames]


def grounding_prompt(clip, sentence: str, duration: float, encoding: TemporalEncoding) -> list[dict]:
    """One user turn: <image> "t=0.0s" <image> "t=0.5s" ... question (images as placeholders, filled
    in order by the processor or by TRL)."""
    content: list[dict] = []
    for time in clip.frame_times:
        content += [{"type": "image"}, {"type": "text", "text": frame_label(encoding, time, duration)}]
    content.append({"type": "text", "text": question(sentence, duration, encoding)})
    return [{"role": "user", "content": content}]


def grounding_answer(item: dict, encoding: TemporalEncoding) -> str:
    start, end = item["timestamp"]
    return encoding.encode(start, end, item["duration"])
