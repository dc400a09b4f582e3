"""The embedded quickstart: a tiny Qwen-VL checkpoint and synthetic video pairs, checked and summarised.

``python -m vlmrm.quickstart`` (what the README's first command runs) builds, once, under
``data/quickstart/``:

* ``tiny-qwen2_vl/`` — a random-weight Qwen2-VL saved with ``save_pretrained`` (loads through the
  same ``from_pretrained(path)`` code as ``Qwen/Qwen2-VL-2B-Instruct``);
* ``synthetic/`` — real mp4 pairs with train.csv / test.csv in VideoAlign's CSV format, labelled by
  visual rules (see README, "Synthetic data");

then validates both CSVs exactly as training does and prints a summary. Existing assets are reused:
a second run only validates.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from vlmrm.data.validate import validate_video_pairs
from vlmrm.data.video import FrameSampling, resolve_backend
from vlmrm.synthetic import SyntheticVideoConfig, generate_video_pairs
from vlmrm.tiny import build_tiny_checkpoint, parameter_count

DEFAULT_ROOT = Path("data/quickstart")
DEFAULT_FAMILY = "qwen2_vl"
QUICKSTART_DIMS = ["VQ", "MQ", "TA"]
QUICKSTART_PAIRS = {"num_train": 300, "num_test": 100}
"""Sizes the tiny model learns every rule from on 2 CPU cores in minutes (tiny_model_notes.md)."""


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


def _synthetic_config(data_dir: Path, seed: int) -> SyntheticVideoConfig:
    return SyntheticVideoConfig(out_dir=data_dir, seed=seed, **QUICKSTART_PAIRS)


def _data_is_current(config: SyntheticVideoConfig) -> bool:
    """rules.json is written last and records the generator config, so it marks complete, current data."""
    rules = config.out_dir / "rules.json"
    if not rules.is_file():
        return False
    recorded = json.loads(rules.read_text()).get("config", {})
    return (
        all(recorded.get(k) == v for k, v in QUICKSTART_PAIRS.items()) and recorded.get("seed") == config.seed
    )


def prepare(root: Path = DEFAULT_ROOT, family: str = DEFAULT_FAMILY, seed: int = 0) -> QuickstartAssets:
    """Build the tiny checkpoint and the synthetic data under ``root`` unless already there."""
    assets = QuickstartAssets(model_dir=root / f"tiny-{family}", data_dir=root / "synthetic")
    if not (assets.model_dir / "config.json").is_file():
        print(f"[quickstart] building tiny {family} checkpoint -> {assets.model_dir}", flush=True)
        build_tiny_checkpoint(family, assets.model_dir, seed=seed)
    synthetic = _synthetic_config(assets.data_dir, seed)
    if not _data_is_current(synthetic):
        print(f"[quickstart] generating synthetic video pairs -> {assets.data_dir}", flush=True)
        summary = generate_video_pairs(synthetic)
        print(f"[quickstart] {summary.num_videos} videos in {summary.seconds:.1f} s", flush=True)
    return assets


def validate_assets(assets: QuickstartAssets) -> bool:
    """Validate both CSVs with the same checks training runs; print problems and summaries."""
    backend = resolve_backend("auto")
    ok = True
    for csv_path in (assets.train_csv, assets.test_csv):
        report = validate_video_pairs(csv_path, QUICKSTART_DIMS, sampling=FrameSampling(), backend=backend)
        for problem in report.problems:
            print(problem, file=sys.stderr)
        print(json.dumps({"file": str(csv_path), **report.summary}))
        ok &= not report.failed()
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmrm.quickstart", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--family", default=DEFAULT_FAMILY, choices=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    assets = prepare(args.root, args.family, args.seed)
    print(f"[quickstart] model: {assets.model_dir} ({parameter_count(assets.model_dir):,} parameters)")
    ok = validate_assets(assets)
    print("[quickstart] data OK" if ok else "[quickstart] data has errors", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
