"""The wire format: each malformed item is refused with its status and a message naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from vlmrm.media.video import resolve_backend
from vlmrm.serve.client import npy_bytes
from vlmrm.serve.payload import BadRequest, Limits, RequestParser

FRAMES = np.zeros((4, 16, 16, 3), np.uint8)


@pytest.fixture
def parser(tmp_path):
    return RequestParser(Limits(max_items=3, media_root=tmp_path), resolve_backend("pyav"))


def refused(call, *args) -> tuple[int, str]:
    with pytest.raises(BadRequest) as caught:
        call(*args)
    return caught.value.status, caught.value.message


def test_files_uploads_and_frames_become_scorer_inputs(parser, make_video):
    video = make_video("clip.mp4")
    body = {
        "prompts": ["a", "b", "c"],
        "videos": [
            str(video),
            {"upload": "enc", "format": "encoded"},
            {"upload": "raw", "format": "raw", "shape": list(FRAMES.shape), "fps": 8},
        ],
    }
    uploads = {"enc": ("clip.mp4", video.read_bytes()), "raw": ("", FRAMES.tobytes())}
    parsed = parser.score_request(body, uploads)
    assert parsed.items[0] == video and parsed.items[1].read_bytes() == video.read_bytes()
    assert np.array_equal(parsed.items[2], FRAMES) and parsed.fps == [None, None, 8.0]
    assert parsed.has_arrays
    upload_dir = parsed.items[1].parent
    parsed.close()
    assert not upload_dir.exists()


def test_each_bad_item_names_its_field(parser, make_video, tmp_path):
    video = str(make_video("clip.mp4"))
    npy = {"upload": "v", "format": "npy", "fps": 8}
    cases = [
        ({"prompts": ["a"] * 4, "videos": [video] * 4}, {}, 413, "4 items: at most 3"),
        ({"prompts": ["a"], "videos": ["/etc/hostname"]}, {}, 403, "videos[0]: /etc/hostname lies outside"),
        ({"prompts": ["a"], "videos": [video], "fps": 8}, {}, 422, "videos[0]: fps applies"),
        ({"prompts": ["a"], "videos": [video], "fps": [-1]}, {}, 422, "fps[0]: expected a positive"),
        (
            {"prompts": ["a"], "videos": [npy]},
            {"v": ("", npy_bytes(FRAMES[0]))},
            422,
            "videos[0]: shape [16, 16, 3]",
        ),
        (
            {"prompts": ["a"], "videos": [npy]},
            {"v": ("", npy_bytes(FRAMES.astype(np.int32)))},
            422,
            "dtype int32",
        ),
        ({"prompts": ["a"], "videos": [npy]}, {"v": ("", b"not npy")}, 422, "not a readable .npy"),
        ({"prompts": ["a"], "images": [npy]}, {"v": ("", npy_bytes(FRAMES))}, 422, "images[0]: fps applies"),
        (
            {"prompts": ["a"], "images": [{"upload": "v", "format": "npy"}]},
            {"v": ("", npy_bytes(FRAMES[0].astype(np.float32)))},
            422,
            "images[0]: dtype float32: expected uint8",
        ),
        ({"prompts": ["a"], "videos": [{"upload": "v", "format": "zip"}]}, {}, 422, "format 'zip'"),
        ({"prompts": ["a"], "videos": [7]}, {}, 422, "videos[0]: expected a path"),
        ({"prompts": "a", "videos": [video]}, {}, 422, "prompts: missing or not a list"),
        ({"prompts": ["a"], "videos": [video], "responses": ["x", "y"]}, {}, 422, "responses: 2 for 1"),
    ]
    for body, uploads, status, message in cases:
        got_status, got_message = refused(parser.score_request, body, uploads)
        assert (got_status, message in got_message) == (status, True), (body, got_message)
    files_only = RequestParser(Limits(max_items=3, video_arrays=False), resolve_backend("pyav"))
    npy_body = {"prompts": ["a"], "videos": [npy]}
    assert (
        "takes video files only"
        in refused(files_only.score_request, npy_body, {"v": ("", npy_bytes(FRAMES))})[1]
    )
    assert refused(parser.compare_request, {"prompt": "a", "videos": [video]}, {})[0] == 422
    assert (
        refused(parser.compare_request, {"videos": [video, video]}, {})[1]
        == "prompt: missing or not a string"
    )
