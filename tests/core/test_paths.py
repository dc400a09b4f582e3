"""vlmrm.core.paths: local path vs Hub id, and one clear line for each way a model path is wrong."""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests.conftest import LOOPBACK_HUB_MODELS
from vlmrm.core import paths
from vlmrm.core.paths import (
    CACHE_PROBE_FILE,
    HUB_PROBE_TIMEOUT_S,
    check_directory,
    check_file,
    check_model_source,
    hub_status,
    in_hub_cache,
    is_hub_id,
    looks_local,
)
from vlmrm.core.problems import ConfigError

UNCACHED_HUB_ID = "vlmrm-tests/no-such-model-anywhere"
(KNOWN_HUB_ID,) = LOOPBACK_HUB_MODELS
SLACK_S = 2.0
"""Scheduling slack on top of a timeout on a shared CI machine."""


@pytest.mark.parametrize(
    "value",
    [
        "/abs/model",
        "./outputs/run",
        "../outputs/run",
        "~/models/qwen",
        "outputs/run/checkpoint-4",  # more than one separator
        "model.safetensors",
        "data/train.csv",  # ends like a file
        "outputs_run1",  # no org/name: not a Hub id the tasks accept
        "org/name--x",
        "org/../name",
    ],
)
def test_local_looking_values(value):
    assert looks_local(value)


@pytest.mark.parametrize(
    "value", ["Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct", "org/name_v1", "a-b/c.d-e"]
)
def test_hub_ids(value):
    assert is_hub_id(value) and not looks_local(value)


def test_a_missing_local_path_is_directory_not_found_naming_the_key():
    with pytest.raises(ConfigError) as caught:
        check_model_source("./no/such/model", "model_name_or_path")
    assert str(caught.value) == "directory not found: ./no/such/model (key model_name_or_path)"
    assert caught.value.key == "model_name_or_path"


def test_an_existing_folder_and_none_pass(tmp_path):
    check_model_source(str(tmp_path), "model_name_or_path")
    check_model_source(None, "init_from")


def test_an_uncached_hub_id_offline_is_one_line_in_seconds(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        check_model_source(UNCACHED_HUB_ID, "model_name_or_path")
    assert time.monotonic() - start < SLACK_S
    message = str(caught.value)
    assert "\n" not in message and "HF_HUB_OFFLINE" in message
    assert f"huggingface-cli download {UNCACHED_HUB_ID}" in message


def test_an_uncached_hub_id_with_the_hub_out_of_reach_is_one_line(closed_hub):
    start = time.monotonic()
    with pytest.raises(ConfigError, match="the Hub cannot be reached") as caught:
        check_model_source(UNCACHED_HUB_ID, "model_dir")
    assert time.monotonic() - start < HUB_PROBE_TIMEOUT_S
    assert "\n" not in str(caught.value) and str(caught.value).startswith("model_dir: ")


def test_a_repository_the_hub_does_not_know_is_a_typo(loopback_hub):
    with pytest.raises(ConfigError, match="nor a model on the Hub") as caught:
        check_model_source(UNCACHED_HUB_ID, "model_name_or_path")
    assert "\n" not in str(caught.value)


def test_a_model_the_hub_has_passes(loopback_hub):
    assert hub_status(KNOWN_HUB_ID) == "found"
    check_model_source(KNOWN_HUB_ID, "model_name_or_path")


def test_a_model_the_hub_confirmed_is_not_asked_about_again(loopback_hub, monkeypatch):
    """The command checks paths before the training stack's imports and run_training checks them
    again: one question to the Hub, not two."""
    asked = []
    monkeypatch.setattr(paths, "hub_status", lambda repo_id: asked.append(repo_id) or "found")
    monkeypatch.setattr(paths, "_FOUND_ON_HUB", set())
    check_model_source(KNOWN_HUB_ID, "model_name_or_path")
    check_model_source(KNOWN_HUB_ID, "init_from")
    assert asked == [KNOWN_HUB_ID]


def test_a_cached_hub_id_passes_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("vlmrm.core.paths.in_hub_cache", lambda repo_id: repo_id == UNCACHED_HUB_ID)
    check_model_source(UNCACHED_HUB_ID, "model_name_or_path")


def test_in_hub_cache_reads_the_cache_layout(tmp_path):
    assert not in_hub_cache(UNCACHED_HUB_ID, cache_dir=tmp_path)
    repo = tmp_path / ("models--" + UNCACHED_HUB_ID.replace("/", "--"))
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / CACHE_PROBE_FILE).write_text("{}")
    assert in_hub_cache(UNCACHED_HUB_ID, cache_dir=tmp_path)


def test_the_reachability_probe_is_bounded_by_its_timeout(silent_hub):
    """A server that accepts the connection and never answers: the probe gives up after its timeout."""
    timeout = 0.5
    start = time.monotonic()
    assert hub_status(UNCACHED_HUB_ID, timeout) == "unreachable"
    assert time.monotonic() - start < timeout + SLACK_S


def test_the_suite_reaches_no_host_beyond_loopback():
    """The autouse guard of tests/conftest.py: a connection to any other address fails before a packet
    is sent, so a test that would touch the network fails instead."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1: refused by the guard, never dialled
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_data_paths(tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("x\n")
    check_file(str(data), "meta_data")
    check_directory(str(tmp_path), "data_dir")
    check_file(None, "meta_data_test")
    with pytest.raises(ConfigError, match=r"^file not found: .*nope\.csv \(key meta_data\)$"):
        check_file(str(tmp_path / "nope.csv"), "meta_data")
    with pytest.raises(ConfigError, match=r"^is a directory, not a file: .* \(key dataset_path\)$"):
        check_file(str(tmp_path), "dataset_path")
    with pytest.raises(ConfigError, match=r"^directory not found: .* \(key data_dir\)$"):
        check_directory(str(data), "data_dir")
