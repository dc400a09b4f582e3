"""The embedded quickstart: tiny Qwen-VL + synthetic video pairs, trained and reported on CPU.

``scripts/quickstart.sh`` (the README's first command) runs ``python -m vlmrm.reward.quickstart prepare``,
then ``./run_distributed.sh --gpus 2 --config training_configs/quickstart_cpu.yaml``, then
``python -m vlmrm.reward.quickstart report``. ``prepare`` builds, once, under ``data/quickstart/``:

* ``tiny-qwen2_vl/`` — a random-weight Qwen2-VL saved with ``save_pretrained`` (loads through the
  same ``from_pretrained(path)`` code as ``Qwen/Qwen2-VL-2B-Instruct``);
* ``synthetic/`` — real mp4 pairs with train.csv / test.csv in VideoAlign's CSV format, labelled by
  visual rules (see README, "Synthetic data");

then validates both CSVs exactly as training does and prints a summary. Existing assets are reused:
a second run only validates.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import resolve_backend
from vlmrm.pairs.validate import validate_video_pairs
from vlmrm.reward.config import parse_config
from vlmrm.reward.train import FINAL_METRICS_FILE
from vlmrm.testing.synthetic import SyntheticVideoConfig, generate_video_pairs
from vlmrm.testing.tiny import build_tiny_checkpoint, parameter_count

QUICKSTART_CONFIG = Path("training_configs/quickstart_cpu.yaml")
DEFAULT_ROOT = Path("data/quickstart")
DEFAULT_OUTPUT = Path("outputs/quickstart")
DEFAULT_FAMILY = "qwen2_vl"
QUICKSTART_DIMS = ["VQ", "MQ", "TA"]
QUICKSTART_DATA = {"num_train": 3000, "num_test": 300, "prompt_style": "colour"}
"""What the tiny model learns every rule from on 2 CPU cores in minutes. With 300 pairs it learns
VQ and MQ but memorises TA per clip (train 1.00, held-out ~0.5); 3000 pairs make the rule the
cheaper fit. 300 held-out pairs give ~250 non-tie pairs per dimension for the 0.90 bar."""
ACCURACY_BAR = 0.90


@dataclass
class QuickstartAssets:
    model_dir: Path
    data_dir: Path

    @property
    def train_csv(self) -> Path:
        return self.data_dir / "train.csv"

    @property
    def test_csv(self) -> Path:
        return self.data_dir / "test.csv"


def _data_is_current(config: SyntheticVideoConfig) -> bool:
    """rules.json is written last and records the generator config, so it marks complete, current data."""
    rules = config.out_dir / "rules.json"
    if not rules.is_file():
        return False
    recorded = json.loads(rules.read_text()).get("config", {})
    wanted = {**asdict(config), "out_dir": str(config.out_dir)}
    return all(recorded.get(key) == value for key, value in wanted.items())


def prepare(
    root: Path = DEFAULT_ROOT, family: str = DEFAULT_FAMILY, seed: int = 0, data: dict | None = None
) -> QuickstartAssets:
    """Build the tiny checkpoint and the synthetic data under ``root`` unless already there."""
    assets = QuickstartAssets(model_dir=root / f"tiny-{family}", data_dir=root / "synthetic")
    if not (assets.model_dir / "config.json").is_file():
        print(f"[quickstart] building tiny {family} checkpoint -> {assets.model_dir}", flush=True)
        build_tiny_checkpoint(family, assets.model_dir, seed=seed)
    synthetic = SyntheticVideoConfig(
        out_dir=assets.data_dir, seed=seed, **{**QUICKSTART_DATA, **(data or {})}
    )
    if not _data_is_current(synthetic):
        print(f"[quickstart] generating synthetic video pairs -> {assets.data_dir}", flush=True)
        summary = generate_video_pairs(synthetic)
        print(f"[quickstart] {summary.num_videos} videos in {summary.seconds:.1f} s", flush=True)
    return assets


def validate_assets(assets: QuickstartAssets, config: Path = QUICKSTART_CONFIG) -> bool:
    """Validate both CSVs with the checks and frame sampling of the quickstart's training config."""
    data = parse_config(config).data
    sampling, backend = FrameSampling.from_data_config(data), resolve_backend(data.video_backend)
    ok = True
    for csv_path in (assets.train_csv, assets.test_csv):
        report = validate_video_pairs(csv_path, data.eval_dim, sampling=sampling, backend=backend)
        for problem in report.problems:
            print(problem, file=sys.stderr)
        print(json.dumps({"file": str(csv_path), **report.summary}))
        ok &= not report.failed()
    return ok


def report(output_dir: Path) -> int:
    """Print the held-out accuracy per dimension of a finished quickstart run against the bar."""
    metrics_file = output_dir / FINAL_METRICS_FILE
    if not metrics_file.is_file():
        print(f"[quickstart] no {metrics_file}: did training finish?", file=sys.stderr)
        return 1
    metrics = json.loads(metrics_file.read_text())
    print(f"[quickstart] held-out accuracy (ties excluded), {output_dir}:")
    ok = True
    for dim in QUICKSTART_DIMS:
        accuracy = metrics[f"eval_accuracy_{dim}"]
        ok &= accuracy >= ACCURACY_BAR
        verdict = "ok" if accuracy >= ACCURACY_BAR else f"below {ACCURACY_BAR}"
        print(
            f"  {dim}: {accuracy:.3f} ({verdict}); with ties {metrics[f'eval_accuracy_with_ties_{dim}']:.3f}"
        )
    return 0 if ok else 1


EVAL_CONFIG = Path("training_configs/eval_config_example.yaml")
TENSORBOARD_FOLDER = "runs"
"""Where the run's TensorBoard events go (``logging_dir`` = output_dir/runs, vlmrm.training.run)."""


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _first_test_pair(test_csv: Path) -> dict | None:
    if not test_csv.is_file():
        return None
    with test_csv.open(newline="") as handle:
        return next(csv.DictReader(handle), None)


def summary(output_dir: Path, root: Path = DEFAULT_ROOT, started: float | None = None) -> str:
    """What the quickstart made (files, TensorBoard command, elapsed time since ``started``, a Unix
    time) and the commands to run next, with real paths of this run so they can be pasted."""
    checkpoints = sorted(
        (p.name for p in output_dir.glob("checkpoint-*") if p.is_dir()), key=lambda n: int(n.split("-")[-1])
    )
    data_dir = root / "synthetic"
    lines = [
        "[quickstart] made:",
        f"  reward model    {output_dir}/ (final) + {', '.join(checkpoints) or 'no checkpoints'}",
        f"  metrics         {output_dir / FINAL_METRICS_FILE}",
        f"  data            {data_dir}/ (train.csv, test.csv, videos/), tiny backbone {root}/tiny-{DEFAULT_FAMILY}/",
        f"  TensorBoard     .venv/bin/tensorboard --logdir {output_dir / TENSORBOARD_FOLDER}",
    ]
    if started is not None:
        lines.append(f"  elapsed         {_elapsed(time.time() - started)}")
    lines += [
        "[quickstart] next:",
        f"  ./run_eval.sh   # every checkpoint on the held-out pairs ({EVAL_CONFIG}) -> evaluation_results/report.html",
    ]
    pair = _first_test_pair(data_dir / "test.csv")
    if pair is not None:
        videos = " ".join(f"--video {data_dir / pair[f'path_{side}']}" for side in ("A", "B"))
        lines.append(
            f'  .venv/bin/python -m vlmrm.score --checkpoint {output_dir} {videos} --prompt "{pair["prompt"]}" --compare'
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vlmrm.reward.quickstart", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command")
    prepare_parser = commands.add_parser("prepare", help="build the tiny model and data (default), validate")
    prepare_parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    prepare_parser.add_argument(
        "--family", default=DEFAULT_FAMILY, choices=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
    )
    prepare_parser.add_argument("--seed", type=int, default=0)
    prepare_parser.add_argument("--num_train", type=int, default=QUICKSTART_DATA["num_train"])
    prepare_parser.add_argument("--num_test", type=int, default=QUICKSTART_DATA["num_test"])
    report_parser = commands.add_parser("report", help="print held-out accuracy of a finished run")
    report_parser.add_argument("output_dir", type=Path, nargs="?", default=DEFAULT_OUTPUT)
    report_parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where prepare built the data")
    report_parser.add_argument(
        "--started", type=float, help="Unix time the quickstart started (elapsed time)"
    )
    args = parser.parse_args(argv or ["prepare"])
    if args.command == "report":
        status = report(args.output_dir)
        if status == 0 or (args.output_dir / FINAL_METRICS_FILE).is_file():
            print(summary(args.output_dir, args.root, args.started))
        return status
    assets = prepare(
        args.root, args.family, args.seed, {"num_train": args.num_train, "num_test": args.num_test}
    )
    print(f"[quickstart] model: {assets.model_dir} ({parameter_count(assets.model_dir):,} parameters)")
    ok = validate_assets(assets)
    print("[quickstart] data OK" if ok else "[quickstart] data has errors", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
