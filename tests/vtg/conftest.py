"""VTG fixtures: a small synthetic grounding set, for runs that check run management (not learning)."""

import pytest

from vlmrm.testing.synthetic_vtg import SyntheticVTGConfig, generate_vtg_dataset

NUM_TRAIN = 8
FEW_FRAMES = 4
"""Frames per clip: enough for the task's prompt layout, few enough for a step in well under a second."""


@pytest.fixture(scope="module")
def small_vtg_data(tmp_path_factory):
    """NUM_TRAIN training clips, no held-out split."""
    out = tmp_path_factory.mktemp("vtg_small")
    generate_vtg_dataset(SyntheticVTGConfig(out_dir=out, num_train=NUM_TRAIN, num_test=0, seed=0))
    return out
