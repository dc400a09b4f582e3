"""Imports point one way: shared layers below the task packages, tasks never import each other.

Every ``import`` / ``from … import`` of vlmrm in the package, at any depth (a lazy import inside a
function counts), is checked against :data:`LAYERS`: a module may import its own package and
packages of a *lower* layer only. Same-layer peers (two tasks, ``modeling`` and ``pairs``) may not
import each other, so there is no cycle between packages. Root modules (``vlmrm/tiny.py`` …) and
``vlmrm/data/`` are command entry points and rank with ``cli``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vlmrm"

LAYERS = {
    "core": 0,
    "media": 1,
    "modeling": 2,
    "pairs": 2,
    "training": 3,
    "testing": 3,
    "reward": 4,
    "vtg": 4,
    "grm": 4,
    "cli": 5,
    "serve": 5,
}
ENTRY_PACKAGES = {"data"}
"""Subpackages holding only command entry modules kept under their documented names."""


def package_of(relative: Path) -> str:
    """The layer package of a module path relative to ``vlmrm/``."""
    if len(relative.parts) == 1 or relative.parts[0] in ENTRY_PACKAGES:
        return "cli"
    return relative.parts[0]


def imported_packages(source: str) -> list[tuple[int, str]]:
    """(line, first component under vlmrm) of every vlmrm import in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "vlmrm":
                found.append((node.lineno, parts[1] if len(parts) > 1 else ""))
    return found


def violations(root: Path) -> list[str]:
    """Every import in the tree under ``root`` that goes sideways, upwards or to an unknown package."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        own = package_of(relative)
        for line, target in imported_packages(path.read_text()):
            target = "cli" if target in ENTRY_PACKAGES else target
            where = f"{relative}:{line}"
            if target not in LAYERS:
                problems.append(f"{where}: imports vlmrm.{target or '<root>'}, which is in no layer")
            elif target != own and LAYERS[target] >= LAYERS[own]:
                problems.append(
                    f"{where}: {own} (layer {LAYERS[own]}) imports {target} (layer {LAYERS[target]})"
                )
    return problems


def test_every_package_is_in_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages - ENTRY_PACKAGES == set(LAYERS)


def test_imports_point_down_the_layers():
    assert violations(PACKAGE) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("vtg/sft.py", "from vlmrm.grm.sources import x\n", "vtg (layer 4) imports grm (layer 4)"),
        ("media/video.py", "def f():\n    import vlmrm.reward.losses\n", "media (layer 1) imports reward"),
        ("modeling/families.py", "from vlmrm.pairs.labels import X\n", "modeling (layer 2) imports pairs"),
        ("core/config.py", "from vlmrm.tasks import run\n", "imports vlmrm.tasks, which is in no layer"),
    ],
)
def test_a_sideways_upward_or_unknown_import_is_reported(tmp_path, module, source, expected):
    path = tmp_path / module
    path.parent.mkdir(parents=True)
    path.write_text(source)
    (found,) = violations(tmp_path)
    assert expected in found and f"{module}:" in found


def test_the_reward_model_imports_without_qwen_vl_utils_pandas_or_decoders():
    """``modeling.reward_model`` needs torch + transformers alone (the GPU benchmark machine has
    neither qwen-vl-utils nor pandas nor a video decoder)."""
    import subprocess
    import sys

    blocked = ["qwen_vl_utils", "pandas", "decord", "av", "trl", "deepspeed", "peft"]
    code = (
        "import sys\n"
        + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
        + "import vlmrm.modeling.reward_model, vlmrm.modeling.families\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
