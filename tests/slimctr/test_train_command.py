"""``slimctr train``: killed and resumed, and data-parallel under torchrun."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctr.checkpoint import CHECKPOINT_FILE, load_checkpoint
from slimctr.cli import main

BIN = Path(sys.executable).parent
CONFIG = """
[encoder]
min_count = 3
[model]
embedding_dim = 8
hidden_units = [64, 32]
[train]
batch_size = 32
epochs = 2
patience = 10
evals_per_epoch = 4
checkpoint_every = 10
seed = 3
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train_command")
    data = folder / "planted.tsv"
    assert main(["synth", "--rows", "8000", "--out", str(data), "--seed", "2"]) == 0
    assert main(["prepare", "--data", str(data), "--out", str(folder / "cache")]) == 0
    (folder / "config.toml").write_text(CONFIG)
    return folder


def _train_args(cache: Path, out: Path) -> list[str]:
    return [
        "-q",
        "train",
        "--cache",
        str(cache / "cache"),
        "--config",
        str(cache / "config.toml"),
        "--out",
        str(out),
        "--threads",
        "1",
    ]


def _slimctr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "slimctr"), *args], capture_output=True, text=True, timeout=600
    )


def _summary(out: Path) -> dict:
    return json.loads((out / "train.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(cache):
    out = cache / "whole"
    done = _slimctr(*_train_args(cache, out))
    assert done.returncode == 0, done.stderr
    return _summary(out)


def test_a_killed_run_resumes_to_the_same_result(cache, uninterrupted):
    out = cache / "killed"
    checkpoint = out / CHECKPOINT_FILE
    process = subprocess.Popen(
        [str(BIN / "slimctr"), *_train_args(cache, out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "train.json").exists(), "the run ended before it was killed"

    saved = load_checkpoint(checkpoint)  # whole, never half-written
    assert saved["evaluation"] < len(uninterrupted["history"])

    resumed = _slimctr(*_train_args(cache, out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = _summary(out)
    assert summary["resumed"] is True
    assert summary["best_valid_auc"] == pytest.approx(
        uninterrupted["best_valid_auc"], abs=1e-4
    )
    assert not list(out.glob(f"*{CHECKPOINT_FILE}*"))  # removed once finished


def test_resume_without_a_checkpoint_says_how_to_start(cache, tmp_path):
    done = _slimctr(*_train_args(cache, tmp_path / "new"), "--resume")
    assert done.returncode == 2
    assert "no checkpoint to resume from; run without --resume" in done.stderr
    assert "Traceback" not in done.stderr


def test_torchrun_on_two_processes_matches_one(cache, uninterrupted):
    out = cache / "two"
    done = subprocess.run(
        [
            str(BIN / "torchrun"),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "slimctr.cli",
            *_train_args(cache, out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = _summary(out)
    assert summary["processes"] == 2
    assert summary["batch_size"] == 32  # global, 16 rows per process
    assert summary["best_valid_auc"] == pytest.approx(
        uninterrupted["best_valid_auc"], abs=0.005
    )


def test_nproc_starts_the_processes_itself(cache, tmp_path):
    out = tmp_path / "nproc"
    done = _slimctr(*_train_args(cache, out), "--nproc", "2", "--epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _summary(out)["processes"] == 2


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in command:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_killing_an_nproc_run_stops_every_rank(cache, tmp_path):
    out = tmp_path / "nproc_killed"
    process = subprocess.Popen(
        [
            str(BIN / "slimctr"),
            *_train_args(cache, out),
            "--nproc",
            "2",
            "--epochs",
            "50",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (out / CHECKPOINT_FILE).exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 30
    while _processes_mentioning(str(out)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(out)) == []
    assert not (out / "train.json").exists()
    load_checkpoint(out / CHECKPOINT_FILE)
