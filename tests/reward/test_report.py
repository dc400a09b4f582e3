"""report.html rendered in a real headless Chromium: header, every plot image decoded, the table's
metric columns, no section for a final model identical to its last checkpoint, the glossary."""

import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from vlmrm.reward.evaluate import CSV_FIELDS
from vlmrm.reward.report import TABLE_COLUMNS, write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PROBE = """<script>
window.addEventListener('load', () => {
  const probe = document.createElement('pre');
  probe.id = 'probe';
  probe.textContent = JSON.stringify({
    images: [...document.images].map(i => ({complete: i.complete, width: i.naturalWidth})),
    title: document.querySelector('h1').innerText,
    header: document.querySelector('table.header').innerText,
  });
  document.body.appendChild(probe);
});
</script>"""
RENDER_TIMEOUT_S = 120


def browser() -> str:
    """The Chromium binary; a skip where none is installed, a failure under CI (scripts/test.sh
    installs it there)."""
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium under CI: scripts/test.sh installs it with apt-get")
        pytest.skip("Chromium is not installed (scripts/test.sh installs it)")
    return found


def run_browser(*args: str) -> str:
    command = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def fake_result(name: str, step: int, seed: int, **extra) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.choice([1, -1, 0], size=40)
    pairs = [
        {"labels": {"VQ": int(y)}, "rewards_A": {"VQ": float(y + rng.normal())}, "rewards_B": {"VQ": 0.0}}
        for y in labels
    ]
    metrics = {f"{key}_VQ": 0.75 for key in ("accuracy", "accuracy_with_ties", "swap_consistency")}
    metrics.update(tie_eps_VQ=0.1, margin_mean_VQ=0.5, margin_std_VQ=0.2, count_VQ=40, count_A_VQ=14)
    metrics.update(count_B_VQ=13, count_tie_VQ=13)
    return {"model_dir": "runs/full", "checkpoint": name, "step": step, "metrics": metrics,
            "dimensions": ["VQ"], "skipped": [], "pairs": pairs, "tie_k": 1.5, **extra}  # fmt: skip


def test_table_has_every_metric_column_of_the_csv():
    metrics = CSV_FIELDS[CSV_FIELDS.index("accuracy") : CSV_FIELDS.index("skipped_pairs")]
    assert set(TABLE_COLUMNS) == set(metrics)


@pytest.mark.slow  # two browser starts: 5-10 s on an idle machine, minutes on a busy one
def test_report_renders_in_headless_chromium(tmp_path):
    results = [
        fake_result("runs/full/checkpoint-2", 2, 0),
        fake_result("runs/full/checkpoint-4", 4, 1),  # equal accuracy: its line must stay visible
        fake_result("runs/full", 4, 1, identical_to="checkpoint-4"),
        {"model_dir": "runs/broken", "checkpoint": "runs/broken/checkpoint-1", "error": "cannot load: bad"},
    ]
    out = tmp_path / "eval"
    report = write_report(results, out, {"dataset_path": "data/test.csv", "eval_batch_size": 8})
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = run_browser("--dump-dom", probed.as_uri())
    probe = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL).group(1)))
    assert probe["title"] == "vlmrm evaluation report"
    assert "data/test.csv" in probe["header"] and "40 evaluated" in probe["header"]
    # accuracy plot + margins and calibration of the two distinct checkpoints; none for the copy
    assert len(probe["images"]) == 5
    assert all(image["complete"] and image["width"] > 0 for image in probe["images"])
    assert dom.count("margins and calibration</h2>") == 2
    assert "weights identical to checkpoint-4" in dom and "cannot load: bad" in dom
    assert "swap consistency" in dom and "Glossary" in dom
    screenshot = tmp_path / "report.png"
    run_browser(f"--screenshot={screenshot}", "--window-size=1200,1600", report.as_uri())
    pixels = np.asarray(Image.open(screenshot).convert("L"))
    assert pixels.shape == (1600, 1200) and pixels.std() > 10  # something drawn, not a blank page
