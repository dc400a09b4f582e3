"""Dynamic batching in process, with the real tiny scorer: one call per batch, each request its own answer."""

from __future__ import annotations

import asyncio

import pytest

from vlmrm.reward.inference import RewardScorer
from vlmrm.serve.batching import DynamicBatcher, ScoringFailed
from vlmrm.serve.payload import ParsedRequest

TOLERANCE = 1e-5


def video_request(prompts, videos) -> ParsedRequest:
    return ParsedRequest(list(prompts), "video", list(videos), [None] * len(videos))


def test_requests_sent_together_share_a_batch_and_a_bad_one_fails_alone(
    reward_checkpoint, synthetic_pairs, tmp_path
):
    scorer = RewardScorer.from_pretrained(reward_checkpoint, device="cpu")
    videos = sorted((synthetic_pairs / "videos").glob("test_*.mp4"))[:3]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0" * 1024)

    async def serve(requests, max_batch):
        batcher = DynamicBatcher(scorer, max_batch=max_batch, max_wait_s=10.0)
        batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(request, compare) for request, compare in requests), return_exceptions=True
        )
        await batcher.stop()
        return results, batcher.stats

    # 1 + 1 + 2 items fill max_batch 4 at once: one batch, well before max_wait
    requests = [
        (video_request(["red"], videos[:1]), False),
        (video_request(["blue"], videos[1:2]), False),
        (video_request(["red", "red"], [videos[0], videos[2]]), True),
    ]
    (first, second, compared), stats = asyncio.run(serve(requests, max_batch=4))
    assert (stats.batches, stats.requests, stats.items, stats.in_flight) == (1, 3, 4, 0)
    expected = scorer.score(["red", "blue"], videos=videos[:2])
    for got, want in zip([*first, *second], expected):
        assert got["raw"] == pytest.approx(want["raw"], abs=TOLERANCE)
        assert got["Overall"] == pytest.approx(want["Overall"], abs=TOLERANCE)
    for dim, probabilities in scorer.compare(videos[0], videos[2], "red").items():
        assert compared[dim] == pytest.approx(probabilities, abs=TOLERANCE)

    requests = [(video_request(["red"], [broken]), False), (video_request(["red"], videos[:1]), False)]
    (failed, scored), stats = asyncio.run(serve(requests, max_batch=2))
    assert isinstance(failed, ScoringFailed) and "broken.mp4" in str(failed)
    assert scored[0]["raw"] == pytest.approx(expected[0]["raw"], abs=TOLERANCE)
    assert stats.batches == 1
