"""CSV -> labelled pairs: every label / use_tied_data combination, custom dimensions, decoding."""

import itertools

import pytest
import torch

from vlmrm.core.problems import DataValidationError
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import resolve_backend
from vlmrm.pairs.video_pairs import VideoPairDataset, load_video_pairs

Y = {"A": 1, "B": -1, "same": 0}
ALL_COMBOS = list(itertools.product(Y, repeat=3))  # 27 rows: every (VQ, MQ, TA) label triple


def combo_rows():
    return [
        {
            "path_A": f"videos/{i}_A.mp4",
            "path_B": f"videos/{i}_B.mp4",
            "prompt": f"p{i}",
            "VQ": vq,
            "MQ": mq,
            "TA": ta,
        }
        for i, (vq, mq, ta) in enumerate(ALL_COMBOS)
    ]


@pytest.mark.parametrize("use_tied_data", [True, False])
@pytest.mark.parametrize("eval_dim", [["VQ", "MQ", "TA"], ["MQ"], ["TA", "VQ"]])
def test_labels_for_every_combination(make_csv, eval_dim, use_tied_data):
    csv_path = make_csv(combo_rows())
    table = load_video_pairs(csv_path, eval_dim, use_tied_data=use_tied_data)
    columns = {"VQ": 0, "MQ": 1, "TA": 2}
    expected = []
    for i, combo in enumerate(ALL_COMBOS):
        labels = tuple(Y[combo[columns[d]]] for d in eval_dim)
        if use_tied_data or any(labels):
            expected.append((i, labels))
    assert [(p.row, p.labels) for p in table.pairs] == expected
    # all-tie rows over the selected dims: 3^(3 - len(eval_dim)) of the 27 combinations
    all_tie = 3 ** (3 - len(eval_dim))
    assert table.dropped_all_tie_rows == (0 if use_tied_data else all_tie)
    assert len(table.pairs) == 27 - table.dropped_all_tie_rows


def test_paths_resolve_against_data_dir_csv_folder_or_absolute(make_csv, tmp_path):
    absolute = str(tmp_path / "abs" / "x.mp4")
    csv_path = make_csv(
        [{"path_A": "videos/a.mp4", "path_B": absolute, "prompt": "p", "VQ": "A", "MQ": "B", "TA": "same"}]
    )
    default = load_video_pairs(csv_path, ["VQ"]).pairs[0]
    assert default.path_a == csv_path.parent / "videos/a.mp4"
    assert str(default.path_b) == absolute
    other = load_video_pairs(csv_path, ["VQ"], data_dir=tmp_path / "root").pairs[0]
    assert other.path_a == tmp_path / "root" / "videos/a.mp4"
    assert str(other.path_b) == absolute


def test_any_dimension_names(make_csv):
    header = ["path_A", "path_B", "prompt", "Aesthetics", "Physics"]
    rows = [{"path_A": "a.mp4", "path_B": "b.mp4", "prompt": "p", "Aesthetics": "B", "Physics": "same"}]
    table = load_video_pairs(make_csv(rows, header=header), ["Physics", "Aesthetics"])
    assert table.pairs[0].labels == (0, -1)
    assert table.label_counts() == {
        "Physics": {"A": 0, "B": 0, "same": 1, "missing": 0},
        "Aesthetics": {"A": 0, "B": 1, "same": 0, "missing": 0},
    }


def test_errors_name_file_line_and_column(make_csv):
    rows = [
        {"path_A": "a.mp4", "path_B": "b.mp4", "prompt": "p", "VQ": "A", "MQ": "B", "TA": "same"},
        {"path_A": "a.mp4", "path_B": "b.mp4", "prompt": "p", "VQ": "better", "MQ": "B", "TA": "tie"},
        {"path_A": "", "path_B": "b.mp4", "prompt": "p", "VQ": "A", "MQ": "B", "TA": "A"},
    ]
    csv_path = make_csv(rows)
    with pytest.raises(DataValidationError) as err:
        load_video_pairs(csv_path, ["VQ", "MQ", "TA"])
    messages = [str(p) for p in err.value.problems]
    assert messages == [
        f"error: {csv_path}:3 [VQ]: unknown label 'better' (valid: A, B, same; empty or 'invalid' = missing)",
        f"error: {csv_path}:3 [TA]: unknown label 'tie' (valid: A, B, same; empty or 'invalid' = missing)",
        f"error: {csv_path}:4 [path_A]: empty video path",
    ]


def test_missing_column_and_missing_file(make_csv, tmp_path):
    csv_path = make_csv(
        [{"path_A": "a", "path_B": "b", "prompt": "p", "VQ": "A"}],
        header=["path_A", "path_B", "prompt", "VQ"],
    )
    with pytest.raises(DataValidationError, match=r"pairs.csv:1 \[MQ\]: missing column"):
        load_video_pairs(csv_path, ["VQ", "MQ"])
    with pytest.raises(DataValidationError, match="CSV file not found"):
        load_video_pairs(tmp_path / "nope.csv", ["VQ"])


def test_dataset_decodes_both_sides(make_csv, make_video):
    make_video("videos/a.mp4", num_frames=16, fps=8)
    make_video("videos/b.mp4", num_frames=30, fps=10)
    csv_path = make_csv(
        [
            {
                "path_A": "videos/a.mp4",
                "path_B": "videos/b.mp4",
                "prompt": "a red square",
                "VQ": "A",
                "MQ": "same",
                "TA": "B",
            }
        ]
    )
    table = load_video_pairs(csv_path, ["VQ", "MQ", "TA"])
    dataset = VideoPairDataset(
        table, FrameSampling(min_pixels=56 * 56, max_pixels=56 * 56), resolve_backend("pyav")
    )
    item = dataset[0]
    assert torch.equal(item["labels"], torch.tensor([1.0, 0.0, -1.0]))
    assert item["video_A"].indices == [0, 5, 10, 15]  # 2 s at 2 fps = 4 frames (also the minimum)
    assert item["video_B"].indices == [0, 6, 12, 17, 23, 29]
    assert item["video_A"].frames.shape == (4, 3, 56, 56)
    assert item["prompt"] == "a red square" and item["pair_id"] == 2  # the CSV line (header = line 1)
