"""GRM rejection sampling: shown order, resume, ties / bad media, instructions, the HF and vLLM engines.

Most tests drive the sampler with :class:`ScriptedEngine` (canned generations, no model); the
``slow`` ones run the real HF engine on the tiny qwen2_vl checkpoint, whose random weights write
random text, so nearly every verdict is unparseable and must be counted as such.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vlmrm.grm import rejection_sampling as rs
from vlmrm.grm.engines import GenerationSettings, HFEngine, Request, VLLMEngine
from vlmrm.grm.instructions import (
    DEFAULT_COT_INSTRUCTIONS,
    DEFAULT_DIRECT_INSTRUCTIONS,
    PROMPT_PLACEHOLDER,
    default_instruction,
    load_instruction,
    verdict_text,
)
from vlmrm.grm.parsing import judge
from vlmrm.grm.sources import GRMSample
from vlmrm.testing.tiny import tiny_checkpoint

NUM_PAIRS = 24
IMAGE_SIZE = 32


Pair = GRMSample
answer_judge = judge  # the real judge: <answer> first, mapped back through the order shown


def colour(index: int) -> tuple[int, int, int]:
    return (index * 7 % 256, index * 13 % 256, 200)


def write_pairs(root: Path, count: int = NUM_PAIRS, ground_truth=lambda i: 1 + i % 2) -> list[Pair]:
    """Image pairs whose item k of pair i is a flat colour, so a test can tell which file it got."""
    root.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(count):
        paths = []
        for k in (1, 2):
            path = root / f"p{i}_{k}.png"
            Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), colour(2 * i + k)).save(path)
            paths.append(path)
        pairs.append(Pair(f"s{i}", "test", f"caption {i}", tuple(paths), "image", ground_truth(i)))
    return pairs


class ScriptedEngine:
    """Always answers that the first image shown is better; records what it was asked."""

    def __init__(self, fail_after_batches: int | None = None):
        self.requests: list[Request] = []
        self.batches = 0
        self.fail_after_batches = fail_after_batches

    def generate(self, requests: list[Request]) -> list[str]:
        if self.fail_after_batches is not None and self.batches >= self.fail_after_batches:
            raise KeyboardInterrupt("simulated kill")
        self.batches += 1
        self.requests += requests
        return [f"<think>looks fine</think><answer>{verdict_text(r.media, 1)}</answer>" for r in requests]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_shown_order_is_seeded_recorded_and_both_orders_occur(tmp_path):
    pairs = write_pairs(tmp_path / "data")
    engine = ScriptedEngine()
    job = rs.SamplingJob(tmp_path / "out" / "filtered.jsonl", batch_size=5, seed=3)
    stats = job.run(pairs, engine, answer_judge)

    processed = {line["sample_id"]: line for line in lines(job.processed_path)}
    orders = {tuple(line["shown_order"]) for line in processed.values()}
    assert orders == {(1, 2), (2, 1)}
    for pair in pairs:
        assert tuple(processed[pair.sample_id]["shown_order"]) == rs.shown_order(3, pair.sample_id)
    # the engine saw the files in the recorded order: its first image is the item shown_order[0]
    by_id = {p.sample_id: p for p in pairs}
    for request in engine.requests:
        first = processed[request.sample_id]["shown_order"][0]
        assert request.visuals[0].getpixel((0, 0)) == colour(2 * int(request.sample_id[1:]) + first)
        assert by_id[request.sample_id].prompt in request.instruction
    # "Image 1 is better" is right exactly when the better item was shown first
    expected_kept = [p.sample_id for p in pairs if rs.shown_order(3, p.sample_id)[0] == p.ground_truth]
    kept = lines(job.output_path)
    assert [r["sample_id"] for r in kept] == expected_kept
    for record in kept:
        order = record["shown_order"]
        assert record["items_shown"] == [str(by_id[record["sample_id"]].items[i - 1]) for i in order]
        assert record["predicted"] == record["ground_truth"] == order[0]
    assert stats["correct"] == stats["kept"] == len(expected_kept)
    assert stats["accuracy"] == pytest.approx(len(expected_kept) / NUM_PAIRS)
    assert json.loads(job.stats_path.read_text()) == stats
    # another seed shows some pairs the other way round
    assert any(rs.shown_order(4, p.sample_id) != rs.shown_order(3, p.sample_id) for p in pairs)


def test_resume_skips_processed_ids_and_heals_a_torn_line(tmp_path):
    pairs = write_pairs(tmp_path / "data")
    output = tmp_path / "filtered.jsonl"
    killed = ScriptedEngine(fail_after_batches=2)
    with pytest.raises(KeyboardInterrupt):
        rs.SamplingJob(output, batch_size=5).run(pairs, killed, answer_judge)
    first_ids = [r.sample_id for r in killed.requests]
    assert len(first_ids) == 10
    job = rs.SamplingJob(output, batch_size=5)
    with job.processed_path.open("a") as handle:
        handle.write('{"sample_id": "s10", "sta')  # killed mid-write

    resumed = ScriptedEngine()
    stats = job.run(pairs, resumed, answer_judge)
    assert [r.sample_id for r in resumed.requests] == [p.sample_id for p in pairs[10:]]
    processed_ids = [line["sample_id"] for line in lines(job.processed_path)]
    assert sorted(processed_ids) == sorted(p.sample_id for p in pairs)
    kept_ids = [r["sample_id"] for r in lines(output)]
    assert len(kept_ids) == len(set(kept_ids)) == stats["kept"]
    assert stats["total"] == NUM_PAIRS

    again = ScriptedEngine()
    assert rs.SamplingJob(output, batch_size=5).run(pairs, again, answer_judge) == stats
    assert again.requests == []


def test_kept_record_without_its_processed_line_is_not_redone(tmp_path):
    """Killed between the two appends: the kept record is there, its processed line is not."""
    pairs = write_pairs(tmp_path / "data", count=4, ground_truth=lambda i: 1)
    job = rs.SamplingJob(tmp_path / "filtered.jsonl", batch_size=4)
    job.run(pairs, ScriptedEngine(), answer_judge)
    kept = lines(job.output_path)
    assert kept
    job.processed_path.write_text("")
    again = ScriptedEngine()
    stats = job.run(pairs, again, answer_judge)
    assert {r.sample_id for r in again.requests} == {p.sample_id for p in pairs} - {
        r["sample_id"] for r in kept
    }
    assert len(lines(job.output_path)) == stats["kept"] == len(kept)


def test_ties_and_unreadable_media_are_counted_not_generated(tmp_path):
    pairs = write_pairs(tmp_path / "data", count=6, ground_truth=lambda i: "tie" if i < 2 else 1)
    pairs[2].items[1].unlink()
    pairs[3].items[0].write_bytes(b"not a png")
    engine = ScriptedEngine()
    job = rs.SamplingJob(tmp_path / "filtered.jsonl")
    stats = job.run(pairs, engine, answer_judge)
    assert [r.sample_id for r in engine.requests] == ["s4", "s5"]
    assert stats["ties_skipped"] == 2
    assert stats["media_errors"] == 2
    assert stats["total"] == 6
    assert stats["correct"] + stats["wrong"] + stats["unparseable"] == 2
    status = {line["sample_id"]: line["status"] for line in lines(job.processed_path)}
    assert status["s0"] == status["s1"] == "tie_skipped"
    assert status["s2"] == status["s3"] == "media_error"


def test_summarize_counts_by_hand():
    statuses = ["correct"] * 3 + ["wrong"] + ["unparseable"] * 2 + ["tie_skipped"] * 4 + ["media_error"]
    stats = rs.summarize([{"status": s} for s in statuses])
    assert stats["total"] == 11
    assert stats["parsed"] == 4
    assert stats["unparseable"] == 2
    assert stats["ties_skipped"] == 4
    assert stats["accuracy"] == pytest.approx(3 / 6)
    assert stats["parse_rate"] == pytest.approx(4 / 6)
    assert rs.summarize([{"status": "tie_skipped"}])["accuracy"] is None


@pytest.mark.parametrize("media", ["image", "video"])
def test_default_instructions_ask_for_scores_think_and_answer(media):
    noun = "Image" if media == "image" else "Video"
    cot = default_instruction(media, use_cot=True)
    assert cot == DEFAULT_COT_INSTRUCTIONS[media]
    for needle in ("<think>", "</think>", "<answer>", "from 1 to 10", "total score", PROMPT_PLACEHOLDER):
        assert needle in cot
    assert f"'{noun} 1 is better'" in cot and f"'{noun} 2 is better'" in cot
    assert ("temporal coherence" in cot) == (media == "video")
    direct = DEFAULT_DIRECT_INSTRUCTIONS[media]
    assert "<answer>" in direct and "<think>" not in direct


def test_task_instruction_from_file_reaches_the_engine(tmp_path):
    template = 'Judge {"json": "braces stay"} for: {prompt}. Answer in <answer></answer>.'
    path = tmp_path / "instruction.txt"
    path.write_text(template)
    assert load_instruction(f"@{path}") == template
    assert load_instruction(template) == template
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_instruction(f"@{tmp_path / 'missing.txt'}")
    with pytest.raises(ValueError, match=re.escape(PROMPT_PLACEHOLDER)):
        load_instruction("no placeholder here")

    pairs = write_pairs(tmp_path / "data", count=2)
    engine = ScriptedEngine()
    rs.SamplingJob(tmp_path / "f.jsonl", instruction=load_instruction(f"@{path}")).run(
        pairs, engine, answer_judge
    )
    assert [r.instruction for r in engine.requests] == [
        'Judge {"json": "braces stay"} for: caption 0. Answer in <answer></answer>.',
        'Judge {"json": "braces stay"} for: caption 1. Answer in <answer></answer>.',
    ]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_engine_absent_is_a_clear_error(tmp_path, capsys):
    argv = ["--model_path", "m", "--data_path", "hpdv3:x.json", "--output_path", str(tmp_path / "o.jsonl")]
    with pytest.raises(SystemExit) as exit_info:
        rs.main([*argv, "--engine", "vllm", "--tensor_parallel_size", "2"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "'vllm' package" in message and "--engine hf" in message
    with pytest.raises(ImportError, match="--engine hf"):
        VLLMEngine("m", GenerationSettings(8), tensor_parallel_size=1, gpu_memory_utilization=0.9)
    with pytest.raises(SystemExit):
        rs.main([*argv, "--engine", "hf", "--tensor_parallel_size", "2"])
    assert "vllm only" in capsys.readouterr().err


@pytest.mark.slow
def test_hf_engine_end_to_end_on_the_tiny_model(tmp_path, tiny_cache, monkeypatch):
    """The CLI with the real HF engine: random text comes back, unparseable answers are counted."""
    pairs = write_pairs(tmp_path / "data", count=3)
    monkeypatch.setattr(rs, "load_samples", lambda spec: pairs if spec == "test:pairs" else [])
    checkpoint = tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache)
    output = tmp_path / "out" / "filtered.jsonl"
    argv = ["--model_path", str(checkpoint), "--data_path", "test:pairs", "--output_path", str(output)]
    argv += ["--batch_size", "2", "--max_new_tokens", "6", "--use_cot", "--seed", "1"]
    stats = rs.main(argv, judge=answer_judge)
    assert stats["total"] == 3
    assert stats["parsed"] + stats["unparseable"] == 3
    processed = lines(output.with_name("filtered.processed.jsonl"))
    assert [line["sample_id"] for line in processed] == ["s0", "s1", "s2"]
    assert all(isinstance(line["generated_text"], str) for line in processed)
    assert len(lines(output)) == stats["kept"]
    assert rs.main(argv, judge=answer_judge) == stats  # resumed: nothing left to generate


@pytest.mark.slow
def test_hf_engine_generates_for_video_pairs(tmp_path, tiny_cache, make_video):
    """Two decoded videos per prompt through the video processor (frames not re-sampled)."""
    videos = [make_video(f"v{k}.mp4", num_frames=16, fps=8) for k in range(3)]
    pairs = [
        Pair("v0", "test", "a grey ramp", (videos[0], videos[1]), "video", 1),
        Pair("v1", "test", "another ramp", (videos[1], videos[2]), "video", 2),
    ]
    checkpoint = tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache)
    engine = HFEngine(str(checkpoint), GenerationSettings(max_new_tokens=4))
    media = rs.MediaSettings(video_fps=2.0, image_factor=engine.image_factor, video_backend="pyav")
    job = rs.SamplingJob(tmp_path / "filtered.jsonl", batch_size=2, media=media)
    stats = job.run(pairs, engine, answer_judge)
    assert stats["total"] == 2 and stats["media_errors"] == 0
    processed = lines(job.processed_path)
    assert all(line["generated_text"] is not None for line in processed)


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("task", ["t2i", "t2v"])
def test_example_scripts_pass_their_knobs_as_valid_flags(tmp_path, task):
    """DRY_RUN prints the commands; the sampler's own parser must accept what the script builds."""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHON": sys.executable,
        "MODEL_PATH": "ckpt",
        "DATA_PATH": "hpdv3:train.json,hpdv3:/abs/more.json",
        "DATA_ROOT": "/data/root",
        "OUTPUT_DIR": str(tmp_path / "out"),
        "INFERENCE_BATCH_SIZE": "4",
        "MAX_NEW_TOKENS": "512",
        "TASK_INSTRUCTION": "@my instruction.txt",
        "ENGINE": "vllm",
        "GPUS_PER_NODE": "4",
        "VIDEO_FPS": "1.5",
        "DRY_RUN": "1",
    }
    script = REPO / "examples" / "grm" / f"run_rejection_sampling_{task}.sh"
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True)
    sampling, convert = (shlex.split(line[2:]) for line in result.stdout.splitlines()[:2])
    assert sampling[1:3] == ["-m", "vlmrm.grm.rejection_sampling"]
    args = rs.build_parser().parse_args(sampling[3:])
    assert args.data_path == "hpdv3:/data/root/train.json,hpdv3:/abs/more.json"
    assert args.output_path == str(tmp_path / "out" / "filtered_samples.jsonl")
    assert (args.batch_size, args.max_new_tokens, args.use_cot) == (4, 512, True)
    assert args.task_instruction == "@my instruction.txt"
    assert (args.engine, args.tensor_parallel_size, args.gpu_memory_utilization) == ("vllm", 4, 0.9)
    assert ("--video_fps" in sampling) == (task == "t2v")
    if task == "t2v":
        assert args.video_fps == 1.5 and convert[-2:] == ["--video_fps", "1.5"]
    assert convert[1:3] == ["-m", "vlmrm.grm.convert"]
    assert convert[convert.index("--input") + 1] == args.output_path

    missing = {k: v for k, v in env.items() if k != "MODEL_PATH"}
    failed = subprocess.run(["bash", str(script)], check=False, env=missing, capture_output=True, text=True)
    assert failed.returncode == 2 and "MODEL_PATH" in failed.stderr
