"""eval_rm.py / run_eval.sh on tiny-model checkpoints: agreement with in-training eval, adapters,
broken checkpoints, missing videos, outputs, reward normalisation."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vlmrm.core.config import ConfigError
from vlmrm.modeling.loading import load_reward_model
from vlmrm.reward.collator import PairCollator
from vlmrm.reward.config import RewardTrainingArguments, parse_config
from vlmrm.reward.evaluate import find_checkpoints, load_eval_data, parse_eval_config, run_evaluation
from vlmrm.reward.metrics import kendall_tau_b, preference_metrics, spearman_rho, swap_consistency
from vlmrm.reward.train import build_datasets, build_trainer, make_trainer, reward_normalization

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

COMPARED = ("accuracy", "accuracy_with_ties", "tie_eps", "margin_mean")


def eval_values(root: Path, synthetic_pairs: Path, out: Path, **overrides) -> dict:
    return {
        "model_dirs": [str(root / "full"), str(root / "lora")],
        "dataset_path": str(synthetic_pairs / "test.csv"),
        "data_dir": str(synthetic_pairs),
        "eval_batch_size": 3,
        "output_dir": str(out),
        **overrides,
    }


def test_eval_matches_in_training_eval_and_writes_every_output(trained_runs, synthetic_pairs, tmp_path):
    root, metrics, _ = trained_runs
    rows = run_evaluation(parse_eval_config(values=eval_values(root, synthetic_pairs, tmp_path / "eval")))
    # every checkpoint of both runs plus each final model, three dimensions each
    assert {(Path(r["model_dir"]).name, r["checkpoint"]) for r in rows} == {
        ("full", "checkpoint-2"), ("full", "checkpoint-4"), ("full", "full"),
        ("lora", "checkpoint-2"), ("lora", "checkpoint-4"), ("lora", "lora"),
    }  # fmt: skip
    assert len(rows) == 6 * 3 and not any(r["error"] for r in rows)
    for name in ("full", "lora"):
        final = [r for r in rows if r["checkpoint"] == name]
        for row in final:
            for key in COMPARED:  # the last in-training evaluation, same data: equal to 1e-6
                assert row[key] == pytest.approx(metrics[name][f"eval_{key}_{row['dimension']}"], abs=1e-6)
            assert row["count"] == 8 and row["swap_consistency"] == 1.0 and row["step"] == 4
    out = tmp_path / "eval"
    with (out / "evaluation_results.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 18
    results = json.loads((out / "evaluation_results.json").read_text())
    assert len(results[0]["pairs"]) == 8 and set(results[0]["pairs"][0]["rewards_A"]) == {"VQ", "MQ", "TA"}
    assert len(list((out / "logs").glob("eval_*.log"))) == 1
    report = (out / "report.html").read_text()
    assert "data:image/png;base64," in report and (out / "accuracy_by_checkpoint.png").is_file()
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))


class SwappedPairs(torch.utils.data.Dataset):
    """The previous evaluator's swap pass: every pair decoded again with A and B exchanged."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.pairs[index])
        item["video_A"], item["video_B"] = item["video_B"], item["video_A"]
        item["labels"] = -item["labels"]
        return item


def per_pass_metrics(checkpoint: Path, config, work: Path) -> dict:
    """Metrics of the previous evaluator: ``trainer.predict`` once per pass, each decoding every pair."""
    model, processor = load_reward_model(checkpoint)
    spec = model.reward_spec
    data = load_eval_data(config, spec, processor)
    args = RewardTrainingArguments(
        output_dir=str(work), per_device_eval_batch_size=config.eval_batch_size, report_to="none",
        use_cpu=True, loss_type="btt", tie_k=spec.tie_k,
    )  # fmt: skip
    trainer = make_trainer(model, args, PairCollator.from_spec(processor, spec))
    rewards = np.asarray(trainer.predict(data.dataset).predictions)
    swapped = np.asarray(trainer.predict(SwappedPairs(data.dataset)).predictions)
    labels = np.array([[np.nan if y is None else y for y in p.labels] for p in data.dataset.table.pairs])
    metrics = preference_metrics(
        rewards[:, 0], rewards[:, 1], labels, spec.eval_dim, None, spec.normalization
    )
    for d, dim in enumerate(spec.eval_dim):
        margins, swapped_margins = rewards[:, 0, d] - rewards[:, 1, d], swapped[:, 0, d] - swapped[:, 1, d]
        metrics[f"swap_consistency_{dim}"] = swap_consistency(margins, swapped_margins)
    return metrics


def test_one_forward_for_both_orders_equals_the_per_pass_evaluator_and_final_copy_is_reused(
    trained_runs, synthetic_pairs, tmp_path
):
    root, _, _ = trained_runs
    config = parse_eval_config(values=eval_values(root, synthetic_pairs, tmp_path / "eval", report=False))
    rows = run_evaluation(config)
    for model_dir, checkpoint in (("full", "checkpoint-2"), ("lora", "checkpoint-4"), ("full", "full")):
        path = root / model_dir / checkpoint if checkpoint != model_dir else root / model_dir
        old = per_pass_metrics(path, config, tmp_path / "old")
        for row in (r for r in rows if r["model_dir"].endswith(model_dir) and r["checkpoint"] == checkpoint):
            dim = row["dimension"]
            for key in ("accuracy", "accuracy_with_ties", "count", "count_A", "count_B", "count_tie",
                        "swap_consistency", "tie_eps"):  # fmt: skip
                assert row[key] == old[f"{key}_{dim}"], (checkpoint, key, dim)
            for key in ("margin_mean", "margin_std"):
                assert row[key] == pytest.approx(old[f"{key}_{dim}"], abs=1e-6)
    # each final model has the weights of its step-4 checkpoint: scored once, recorded as identical
    for name in ("full", "lora"):
        final = [r for r in rows if r["model_dir"].endswith(name) and r["checkpoint"] == name]
        assert final and all(r["identical_to"] == "checkpoint-4" for r in final)
        earlier = [r for r in rows if r["model_dir"].endswith(name) and r["checkpoint"] != name]
        assert all(r["identical_to"] == "" for r in earlier)
    log = next((tmp_path / "eval" / "logs").glob("eval_*.log")).read_text()
    assert "weights identical to" in log
    # step 4 of each run replays the batches its step 2 collated (lora checkpoint-4 compared above);
    # the LoRA run's reward tokens and template make its processor differ: collated anew
    replayed = [line.split(": ")[1] for line in log.splitlines() if "collated batches replayed" in line]
    assert replayed == ["checkpoint-4", "checkpoint-4"]


def test_the_training_runs_frame_cache_serves_the_first_checkpoint(
    trained_runs, synthetic_pairs, tmp_path, monkeypatch
):
    """Frames decoded while training (its ``frame_cache_dir``) are read by evaluation, not decoded:
    with decoding made impossible, the evaluation on that cache gives the same rows as a cold one."""
    import vlmrm.media.frame_cache as frame_cache_module

    root, _, values = trained_runs
    cache = tmp_path / "frame_cache"
    cfg = parse_config(values={**values["full"], "frame_cache_dir": str(cache)})
    _, processor = load_reward_model(root / "full")
    _, test = build_datasets(cfg, processor)
    for index in range(len(test)):  # what the in-training evaluation reads and caches
        test[index]
    entries = sorted(cache.rglob("*.frames"))
    assert len(entries) == 2 * len(test)

    common = {"model_dirs": [str(root / "full")], "report": False, "dataloader_num_workers": 0}
    cold = run_evaluation(
        parse_eval_config(values=eval_values(root, synthetic_pairs, tmp_path / "cold", **common))
    )

    def no_decoding(path, *args, **kwargs):
        raise AssertionError(f"decoded {path} although the training run's frame cache holds it")

    monkeypatch.setattr(frame_cache_module, "load_video", no_decoding)
    cached = run_evaluation(
        parse_eval_config(
            values=eval_values(
                root, synthetic_pairs, tmp_path / "cached", frame_cache_dir=str(cache), **common
            )
        )
    )
    assert sorted(cache.rglob("*.frames")) == entries
    assert not any(row["error"] for row in cached)
    assert [{k: v for k, v in row.items() if k != "output_dir"} for row in cached] == [
        {k: v for k, v in row.items() if k != "output_dir"} for row in cold
    ]


def test_adapter_checkpoints_share_one_base_and_match_fresh_loads(trained_runs, synthetic_pairs, tmp_path):
    root, _, values = trained_runs
    rows = run_evaluation(
        parse_eval_config(
            values=eval_values(root, synthetic_pairs, tmp_path / "eval", swap_check=False, report=False)
        )
    )
    cfg = parse_config(values=values["lora"])
    for checkpoint in ("checkpoint-2", "lora"):
        model, processor = load_reward_model(
            root / "lora" / checkpoint if checkpoint != "lora" else root / "lora"
        )
        _, test = build_datasets(cfg, processor)
        fresh = build_trainer(cfg, model, processor, eval_dataset=test).evaluate()
        for row in (r for r in rows if r["checkpoint"] == checkpoint and r["model_dir"].endswith("lora")):
            assert row["margin_mean"] == pytest.approx(
                fresh[f"eval_margin_mean_{row['dimension']}"], abs=1e-6
            )


def test_broken_checkpoint_and_missing_video_are_reported_and_the_rest_evaluated(
    trained_runs, synthetic_pairs, tmp_path
):
    root, metrics, _ = trained_runs
    model_dir = tmp_path / "full"
    shutil.copytree(root / "full", model_dir)
    (model_dir / "checkpoint-3").mkdir()
    (model_dir / "checkpoint-3" / "config.json").write_text("{ not json")
    data = tmp_path / "test.csv"
    lines = (synthetic_pairs / "test.csv").read_text().splitlines()
    lines.insert(2, lines[1].replace("test_0000_A.mp4", "missing_video.mp4", 1))
    data.write_text("\n".join(lines) + "\n")
    values = eval_values(
        root,
        synthetic_pairs,
        tmp_path / "eval",
        model_dirs=[str(model_dir)],
        dataset_path=str(data),
        keep_going=True,
    )
    rows = run_evaluation(parse_eval_config(values=values))
    broken = [r for r in rows if r["checkpoint"] == "checkpoint-3"]
    assert len(broken) == 1 and broken[0]["error"].startswith("cannot load")
    good = [r for r in rows if not r["error"]]
    assert {r["checkpoint"] for r in good} == {"checkpoint-2", "checkpoint-4", "full"}
    assert all(r["skipped_pairs"] == 1 and r["count"] == 8 for r in good)
    for row in (r for r in good if r["checkpoint"] == "full"):  # the skipped row leaves the other 8 pairs
        assert row["accuracy_with_ties"] == pytest.approx(
            metrics["full"][f"eval_accuracy_with_ties_{row['dimension']}"]
        )
    results = json.loads((tmp_path / "eval" / "evaluation_results.json").read_text())
    skipped = next(r for r in results if r["checkpoint"].endswith("full"))["skipped"]
    assert len(skipped) == 1 and f"{data}:3" in skipped[0] and "missing_video.mp4" in skipped[0]


def test_normalisation_is_the_mean_and_std_of_training_rewards(trained_runs, capsys):
    root, _, values = trained_runs
    model, processor = load_reward_model(root / "full")
    stats = model.reward_spec.normalization
    cfg = parse_config(values=values["full"])
    train, test = build_datasets(cfg, processor)
    trainer = build_trainer(cfg, model, processor, eval_dataset=test)
    rewards = np.asarray(trainer.predict(train).predictions).reshape(-1, 3)  # both videos of 16 pairs
    for d, dim in enumerate(cfg.data.eval_dim):
        assert stats[dim]["count"] == 32
        assert stats[dim]["mean"] == pytest.approx(rewards[:, d].mean(), abs=1e-6)
        assert stats[dim]["std"] == pytest.approx(rewards[:, d].std(), abs=1e-6)
    capsys.readouterr()
    again = reward_normalization(trainer, train, cfg.data.eval_dim, None)
    assert all(again[dim]["mean"] == pytest.approx(stats[dim]["mean"], abs=1e-6) for dim in stats)
    lines = capsys.readouterr().err.splitlines()  # not a terminal: whole progress lines
    assert lines[-1].startswith("[progress] normalisation pass (training pairs): 16/16 pairs (100%)")


def test_find_checkpoints_orders_by_step(tmp_path):
    for name in ("checkpoint-10", "checkpoint-2", "checkpoint-100"):
        (tmp_path / name).mkdir()
    (tmp_path / "config.json").write_text("{}")
    assert [p.name for p in find_checkpoints(tmp_path, "checkpoint-*")] == [
        "checkpoint-2", "checkpoint-10", "checkpoint-100", tmp_path.name
    ]  # fmt: skip


def test_eval_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model_dirs"):
        parse_eval_config(values={"dataset_path": "x.csv"})
    with pytest.raises(ConfigError, match="did you mean 'model_dirs'"):
        parse_eval_config(values={"model_dir": ["a"], "dataset_path": "x.csv"})


def test_run_eval_sh_runs_eval_rm(trained_runs, synthetic_pairs, tmp_path):
    root, _, _ = trained_runs
    config = tmp_path / "eval.yaml"
    values = eval_values(
        root, synthetic_pairs, tmp_path / "eval", model_dirs=[str(root / "full")], report=False
    )
    config.write_text(yaml.safe_dump(values))
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "run_eval.sh"), str(config)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "checkpoint-4 VQ: accuracy" in result.stdout
    bad = subprocess.run(
        ["bash", str(ROOT / "run_eval.sh"), str(config), "x"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 2 and "GPU must be a device index" in bad.stderr


def test_overall_column_and_absolute_scores_are_evaluated(trained_runs, synthetic_pairs, tmp_path):
    root, _, _ = trained_runs
    with (synthetic_pairs / "test.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):  # an Overall label (copied from MQ) and made-up absolute VQ scores
        row["Overall"] = row["MQ"]
        row["score_VQ_A"], row["score_VQ_B"] = str(i), str((3 * i) % 5)
    data = tmp_path / "scored.csv"
    with data.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    values = eval_values(
        root, synthetic_pairs, tmp_path / "eval", model_dirs=[str(root / "full")], dataset_path=str(data)
    )
    out_rows = run_evaluation(parse_eval_config(values=values))
    final = {r["dimension"]: r for r in out_rows if r["checkpoint"] == "full"}
    assert set(final) == {"VQ", "MQ", "TA", "Overall"}
    result = next(
        r
        for r in json.loads((tmp_path / "eval" / "evaluation_results.json").read_text())
        if r["checkpoint"].endswith("full")
    )
    stats = load_reward_model(root / "full")[0].reward_spec.normalization

    def overall(side):  # sum of normalised rewards
        return np.array(
            [
                sum(
                    (p[f"rewards_{side}"][d] - stats[d]["mean"]) / stats[d]["std"] for d in ("VQ", "MQ", "TA")
                )
                for p in result["pairs"]
            ]
        )

    labels = np.array([{"A": 1, "B": -1, "same": 0}[row["Overall"]] for row in rows])
    margins = overall("A") - overall("B")
    decided = labels != 0
    assert final["Overall"]["accuracy"] == pytest.approx(
        np.mean(np.sign(margins[decided]) == labels[decided])
    )
    rewards = np.array([[p["rewards_A"]["VQ"], p["rewards_B"]["VQ"]] for p in result["pairs"]]).ravel()
    scores = np.array([[float(row["score_VQ_A"]), float(row["score_VQ_B"])] for row in rows]).ravel()
    assert final["VQ"]["kendall_tau"] == pytest.approx(kendall_tau_b(rewards, scores))
    assert final["VQ"]["spearman_rho"] == pytest.approx(spearman_rho(rewards, scores))
    assert final["MQ"]["kendall_tau"] == ""  # no score columns for MQ
