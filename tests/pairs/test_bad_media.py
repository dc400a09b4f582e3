"""Bad media files and bad CSV bytes: each is named (file, line, column) by validation before training,
or skipped and counted under ``on_bad_sample: skip``; the file's content decides, never its extension."""

import subprocess
import sys

import av
import numpy as np
import pytest
from PIL import Image

from tests.conftest import ramp_frames, tiny_run_values
from vlmrm.core.problems import DataValidationError
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import MAX_VIDEO_PIXELS, VideoBackend, VideoDecodeError, probe_video, resolve_backend
from vlmrm.pairs.image_pairs import parse_image_pair_jsonl
from vlmrm.pairs.validate import validate_video_pairs
from vlmrm.pairs.video_pairs import load_video_pairs
from vlmrm.reward.config import parse_config
from vlmrm.reward.train import skipped_counts
from vlmrm.reward.validate import validate_run_data
from vlmrm.testing.synthetic import write_mp4

DIMS = ["VQ", "MQ", "TA"]
AUDIO_RATE = 16000
AAC_FRAME = 1024
"""Samples per AAC frame: the encoder takes frames of exactly this many samples."""


def row(a, b="videos/good.mp4", **extra):
    return {"path_A": a, "path_B": b, "prompt": "a red square", "VQ": "A", "MQ": "B", "TA": "same", **extra}


def write_audio_only(path, codec="aac", seconds=1):
    """A container with one audio stream (silence) and no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=AUDIO_RATE)
        stream.layout = "mono"
        for i in range(seconds * AUDIO_RATE // AAC_FRAME):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, AAC_FRAME), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = AUDIO_RATE, i * AAC_FRAME
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_faststart_mp4(path, num_frames=16, fps=8):
    """An mp4 with its index (moov) before the frame data, as web videos are written."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for frame in ramp_frames(num_frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture
def bad_media(tmp_path, make_video):
    """Every kind of bad file next to a good one; returns {case: relative path}."""
    videos = tmp_path / "videos"
    make_video("videos/good.mp4", num_frames=16, fps=8)
    whole = (videos / "good.mp4").read_bytes()
    (videos / "half.mp4").write_bytes(whole[: len(whole) // 2])  # index (moov) at the end: lost
    write_faststart_mp4(videos / "faststart.mp4")
    fast = (videos / "faststart.mp4").read_bytes()
    (videos / "faststart_cut.mp4").write_bytes(fast[: len(fast) * 9 // 10])  # index kept, last frames lost
    (videos / "zero.mp4").write_bytes(b"")
    write_audio_only(videos / "audio.m4a")
    write_audio_only(videos / "audio.mp4")
    make_video("videos/two.mp4", num_frames=2)
    make_video("videos/one.mp4", num_frames=1)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(videos / "png.mp4", format="PNG")
    (videos / "video.txt").write_bytes(whole)
    return {
        "half": "videos/half.mp4",
        "faststart_cut": "videos/faststart_cut.mp4",
        "zero": "videos/zero.mp4",
        "audio_m4a": "videos/audio.m4a",
        "audio_mp4": "videos/audio.mp4",
        "two_frames": "videos/two.mp4",
        "one_frame": "videos/one.mp4",
        "png_as_mp4": "videos/png.mp4",
        "mp4_as_txt": "videos/video.txt",
    }


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_every_bad_file_is_named_by_validation(make_csv, bad_media, tmp_path, backend):
    cases = list(bad_media)
    csv_path = make_csv([row(bad_media[case]) for case in cases])  # case i on line i + 2
    report = validate_video_pairs(
        csv_path, DIMS, sampling=FrameSampling(min_frames=4), backend=resolve_backend(backend)
    )
    found = {p.line: str(p) for p in report.problems}
    line = {case: cases.index(case) + 2 for case in cases}
    where = {case: f"error: {csv_path}:{line[case]} [path_A]: " for case in cases}
    path = {case: tmp_path / bad_media[case] for case in cases}
    assert found[line["half"]].startswith(where["half"] + f"unreadable by {backend}")
    assert found[line["zero"]] == where["zero"] + f"file is empty (0 bytes): {path['zero']}"
    for case in ("audio_m4a", "audio_mp4"):
        assert found[line[case]] == where[case] + f"no video stream (streams: audio aac): {path[case]}"
    # fps sampling asks for at least min_frames = 4; qwen-vl-utils alone would quietly sample 2
    assert found[line["two_frames"]] == where["two_frames"] + (
        f"{path['two_frames']}: has 2 frames, fewer than min_frames = 4; short_video: all_frames samples them all"
    )
    assert found[line["one_frame"]] == where["one_frame"] + (
        f"{path['one_frame']}: a video needs at least 2 frames to be sampled, it has 1"
    )
    # a PNG is a one-frame "video" to PyAV and unreadable to decord: an error either way
    assert found[line["png_as_mp4"]].startswith(where["png_as_mp4"])
    # content decides, not the extension: a real mp4 named .txt is fine
    assert line["mp4_as_txt"] not in found
    if backend == "pyav":  # decord refuses the cut faststart file when it opens it (covered by the next line)
        assert found[line["faststart_cut"]] == where["faststart_cut"] + (
            f"truncated: its last frames are missing (the index declares 2.00 s): {path['faststart_cut']}"
        )
    assert found[line["faststart_cut"]].startswith(where["faststart_cut"])
    assert set(found) == {line[c] for c in cases if c != "mp4_as_txt"}
    assert report.summary["bad_lines"] == len(cases) - 1


def test_cut_faststart_file_passes_a_probe_but_not_validation(tmp_path):
    """The case that used to pass validation and kill training mid-epoch: the index promises 16 frames,
    only 13 are in the file (90% of 16 frames plus header), so decoding the last sampled frame fails."""
    write_faststart_mp4(tmp_path / "v.mp4")
    whole = (tmp_path / "v.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) * 9 // 10])
    pyav = resolve_backend("pyav")
    assert probe_video(tmp_path / "cut.mp4", pyav).total_frames == 16
    from vlmrm.media.video import load_video, video_truncation

    with pytest.raises(VideoDecodeError, match="not reached"):
        load_video(tmp_path / "cut.mp4", FrameSampling(), pyav)
    assert video_truncation(tmp_path / "v.mp4") is None
    assert video_truncation(tmp_path / "cut.mp4").startswith("truncated")


def test_huge_frames_are_refused_from_the_header_without_decoding(tmp_path):
    """8000 x 8000 = 64e6 pixels > MAX_VIDEO_PIXELS (8K UHD, 7680 x 4320 = 33.2e6); two flat frames
    compress to under 1 MB. The backend is never asked (it would decode a 192 MB RGB frame)."""
    side = 8000
    write_mp4(tmp_path / "huge.mp4", np.zeros((2, side, side, 3), np.uint8), 8, "mpeg4")
    assert (tmp_path / "huge.mp4").stat().st_size < 2**20

    def never(*args):
        raise AssertionError("the decoder was called")

    untouchable = VideoBackend("pyav", never, never, "av")
    with pytest.raises(VideoDecodeError) as err:
        probe_video(tmp_path / "huge.mp4", untouchable)
    assert err.value.reason == (
        f"frames of {side}x{side} = {side * side} pixels exceed the maximum {MAX_VIDEO_PIXELS} (MAX_VIDEO_PIXELS)"
    )


@pytest.mark.parametrize("limit, refused", [(64 * 64 - 1, True), (64 * 64, False)])
def test_pixel_limit_is_a_parameter(make_video, limit, refused):
    path = make_video("v.mp4")  # 64 x 64 frames
    backend = resolve_backend("pyav")
    if refused:
        with pytest.raises(VideoDecodeError, match=f"64x64 = 4096 pixels exceed the maximum {limit}"):
            probe_video(path, backend, max_pixels=limit)
    else:
        assert probe_video(path, backend, max_pixels=limit).width == 64


def test_num_frames_longer_than_the_video_is_named(make_video, make_csv):
    make_video("videos/good.mp4", num_frames=16)
    make_video("videos/five.mp4", num_frames=5)
    csv_path = make_csv([row("videos/five.mp4")])
    report = validate_video_pairs(
        csv_path, DIMS, sampling=FrameSampling(num_frames=8), backend=resolve_backend("pyav")
    )
    assert [str(p).split(": ", 2)[-1] for p in report.problems] == [
        f"{csv_path.parent}/videos/five.mp4: has 5 frames, fewer than num_frames = 8; short_video: all_frames samples them all"
    ]


def non_utf8_csv(tmp_path):
    """Line 3's prompt is latin-1 ("café" with byte 0xE9), line 4's label has a stray 0xFF byte."""
    header = b"path_A,path_B,prompt,VQ,MQ,TA\n"
    good = b"videos/good.mp4,videos/good.mp4,a red square,A,B,same\n"
    path = tmp_path / "latin.csv"
    path.write_bytes(
        header
        + good
        + "videos/good.mp4,videos/good.mp4,caf\u00e9,A,B,same\n".encode("latin-1")
        + b"videos/good.mp4,videos/good.mp4,ok,A\xff,B,same\n"
    )
    return path


def test_non_utf8_lines_are_named(make_video, tmp_path):
    make_video("videos/good.mp4")
    path = non_utf8_csv(tmp_path)
    report = validate_video_pairs(path, DIMS, backend=resolve_backend("pyav"))
    assert [str(p) for p in report.problems] == [
        f"error: {path}:3 [prompt]: not valid UTF-8 (byte 0xe9 at byte 36 of the line); save the file as UTF-8",
        f"error: {path}:4 [VQ]: not valid UTF-8 (byte 0xff at byte 37 of the line); save the file as UTF-8",
    ]
    assert report.summary["pairs"] == 1  # the good row still parses; rows of unknown text are not pairs


@pytest.mark.slow
def test_non_utf8_csv_from_the_cli_names_the_line(make_video, tmp_path):
    make_video("videos/good.mp4")
    path = non_utf8_csv(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "vlmrm.data.validate", "--file", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"{path}:3 [prompt]: not valid UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


def run_config(tmp_path, csv_path, **data):
    return parse_config(
        values={
            "output_dir": str(tmp_path / "out"),
            "meta_data": str(csv_path),
            "video_backend": "pyav",
            **data,
        }
    )


def test_bad_videos_stop_the_run_or_are_skipped_and_counted(make_csv, bad_media, tmp_path):
    rows = [row("videos/good.mp4"), row(bad_media["half"]), row("videos/good.mp4", bad_media["zero"])]
    csv_path = make_csv(rows, name="train.csv")
    with pytest.raises(DataValidationError) as err:
        validate_run_data(run_config(tmp_path, csv_path))
    assert [(p.line, p.field) for p in err.value.problems] == [(3, "path_A"), (4, "path_B")]

    reports = validate_run_data(run_config(tmp_path, csv_path, on_bad_sample="skip"))
    assert skipped_counts(reports) == {"skipped_pairs_train.csv": 2}
    table = load_video_pairs(csv_path, DIMS, on_bad_sample="skip", problems=reports[0].problems)
    assert [pair.line for pair in table.pairs] == [2]
    with pytest.raises(DataValidationError):
        load_video_pairs(csv_path, DIMS, on_bad_sample="error", problems=reports[0].problems)


def test_skip_never_skips_a_whole_file(make_csv, bad_media, tmp_path):
    """A missing column is not a bad row: no row of the file is usable, so even ``skip`` stops."""
    csv_path = make_csv([row("videos/good.mp4")], header=["path_A", "path_B", "prompt", "VQ", "MQ"])
    with pytest.raises(DataValidationError, match=r"\[TA\]: missing column"):
        validate_run_data(run_config(tmp_path, csv_path, on_bad_sample="skip"))


def test_jsonl_lines_not_utf8_or_nested_too_deep_are_named(tmp_path):
    """Line 2 holds a latin-1 byte, line 3 nests deeper than Python's recursion limit; line 1 is fine."""
    good = b'{"prompt": "p", "chosen": "a", "rejected": "b", "images": ["x.png"]}'
    latin = '{"prompt": "caf\u00e9", "chosen": "a", "rejected": "b", "images": ["x.png"]}'.encode("latin-1")
    deep = b"[" * 100_000 + b"]" * 100_000
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\n".join([good, latin, deep]) + b"\n")
    table = parse_image_pair_jsonl(path)
    assert [str(p) for p in table.problems] == [
        f"error: {path}:2: not valid UTF-8 (byte 0xe9 at byte 16 of the line); save the file as UTF-8",
        f"error: {path}:3: JSON nested too deeply",
    ]
    assert [pair.line for pair in table.pairs] == [1]


@pytest.mark.slow
def test_training_with_a_cut_video_stops_or_skips_and_counts(tiny_cache, tmp_path):
    """A real run on the tiny model: one training video cut in half is named before the model loads
    (error) or its rows are skipped, the run finishes and eval_results counts them (skip)."""
    from vlmrm.reward.train import run_training
    from vlmrm.testing.synthetic import SyntheticVideoConfig, generate_video_pairs
    from vlmrm.testing.tiny import tiny_checkpoint

    data = generate_video_pairs(
        SyntheticVideoConfig(out_dir=tmp_path / "data", num_train=8, num_test=4)
    ).out_dir
    rows = (data / "train.csv").read_text().splitlines()[1:]
    cut = rows[3].split(",")[0]  # path_A of line 5
    whole = (data / cut).read_bytes()
    (data / cut).write_bytes(whole[: len(whole) // 2])
    using = sum(cut in row.split(",")[:2] for row in rows)
    values = tiny_run_values(
        tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache), data, tmp_path / "err", max_steps=1
    )
    with pytest.raises(DataValidationError) as err:
        run_training(parse_config(values=values))
    assert f"{data / 'train.csv'}:5 [path_A]: unreadable by pyav" in str(err.value)
    values.update(output_dir=str(tmp_path / "skip"), on_bad_sample="skip")
    metrics = run_training(parse_config(values=values))
    assert metrics["skipped_pairs_train.csv"] == using and "skipped_pairs_test.csv" not in metrics
    assert metrics["epoch"] > 0  # it trained on the rows left
