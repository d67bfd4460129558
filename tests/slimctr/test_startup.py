"""The light commands start without torch: each runs in a fresh interpreter,
which then reports the heavy modules it loaded."""

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "torchmetrics", "scipy", "matplotlib")

# argv[1]: the file to report to; the rest: the slimctr command line
PROBE = f"""
import json, sys
from slimctr.cli import build_parser, main

build_parser()
try:
    code = main(sys.argv[2:])
except SystemExit as stop:
    code = stop.code
heavy = [name for name in {HEAVY!r} if name in sys.modules]
with open(sys.argv[1], "w") as handle:
    json.dump({{"code": code, "heavy": heavy}}, handle)
"""


def _probe(tmp_path, *argv: str) -> dict:
    report = tmp_path / "probe.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(report.read_text())


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["prepare", "--help"], ["synth", "--help"], ["train", "--help"]],
)
def test_help_loads_no_torch(tmp_path, argv):
    assert _probe(tmp_path, *argv) == {"code": 0, "heavy": []}


def test_synth_and_prepare_load_no_torch(tmp_path):
    data = tmp_path / "tiny.tsv"
    synth = _probe(tmp_path, "-q", "synth", "--rows", "200", "--out", str(data))
    assert synth == {"code": 0, "heavy": []}

    cache = tmp_path / "cache"
    prepare = _probe(
        tmp_path, "-q", "prepare", "--data", str(data), "--out", str(cache)
    )
    assert prepare == {"code": 0, "heavy": []}
    assert (cache / "manifest.json").exists()


def test_a_failing_light_command_loads_no_torch(tmp_path):
    missing = tmp_path / "missing.tsv"
    result = _probe(
        tmp_path, "prepare", "--data", str(missing), "--out", str(tmp_path / "c")
    )
    assert result == {"code": 2, "heavy": []}
