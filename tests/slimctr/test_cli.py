import csv
import gzip
import json
import logging
import math

import numpy as np
import pytest

from slimctr.cli import build_parser, main
from tests.conftest import QUICK_COMPRESSION, shared_file

COMMANDS = [
    "synth",
    "prepare",
    "train",
    "compress",
    "evaluate",
    "score",
    "bench",
    "run",
    "export",
    "serve",
]
# the quality of the defaults is measured by the README's commands
QUICK = ["--epochs", "2", *QUICK_COMPRESSION]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: slimctr {command}" in capsys.readouterr().out


def test_threads_where_work_is_parallel():
    parser = build_parser()
    for command in ["train", "compress", "evaluate", "score", "bench", "run"]:
        args = parser.parse_args([command, "--help"] if False else _minimal(command))
        assert hasattr(args, "threads"), command


def _minimal(command):
    required = {
        "train": ["--data", "x", "--out", "y"],
        "compress": ["--model", "m", "--data", "x", "--out", "y"],
        "evaluate": ["--model", "m", "--data", "x"],
        "score": ["--model", "m", "--input", "x", "--output", "y"],
        "bench": ["--model", "m"],
        "run": ["--out", "y"],
    }
    return [command, *required[command]]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    data = shared_file("criteo/dac_union_12k.txt")
    out = tmp_path_factory.mktemp("real")
    assert main(["run", "--data", str(data), "--out", str(out), *QUICK]) == 0
    return out


def test_run_on_real_rows_writes_a_smaller_artifact_and_report(real_run):
    report = json.loads((real_run / "report.json").read_text())
    assert report["data"]["synthetic"] is False
    assert report["data"]["rows"] == 12494
    assert report["data"]["split"]["test"] == 1249
    base, comp = report["baseline"], report["compressed"]
    assert comp["bytes"] < base["bytes"] / 4
    assert comp["params"] < base["params"]
    assert 0.6 < base["test_auc"] < 1.0 and 0.6 < comp["test_auc"] < 1.0
    for key in ("p50_us", "p99_us", "rows_per_s"):
        assert report["bench"]["compressed"][key] > 0
    drop = report["test_auc_drop"]
    assert drop["low"] <= drop["drop"] <= drop["high"]
    assert [s["step"] for s in report["steps"]][:2] == [0, 1]
    assert "oracle_test_auc" not in report
    # the chosen candidate is the smallest one within the validation budget
    candidates = report["candidates"]
    within = [c for c in candidates if c["within_budget"]]
    assert report["chosen"]["name"] == min(within, key=lambda c: c["bytes"])["name"]
    measured = next(c for c in candidates if c["name"] == report["chosen"]["name"])
    # the written artifact differs from the measured candidate by its metadata
    assert abs(report["compressed"]["bytes"] - measured["bytes"]) < 8_000
    floor = report["steps"][0]["valid_auc"] - report["max_auc_drop"]
    assert all(c["valid_auc"] >= floor for c in within)
    assert {c["storage"] for c in candidates} == {
        "float32",
        "float16",
        "int8-tables",
        "int8",
    }
    for key in (
        "params",
        "nonzeros",
        "bytes",
        "valid_auc",
        "test_auc",
        "test_logloss",
        "p50_us",
        "rows_per_s",
    ):
        assert all(key in c for c in candidates), key
    # the sensitivity table's levels, applied at once, are a candidate
    allocated, levels = report["allocated"], report["sensitivity_allocation"]
    assert allocated["levels"] == levels
    expected = [
        max(1, math.ceil(units * (1 - levels[f"mlp.{2 * i}"]) - 1e-9))
        for i, units in enumerate(base["hidden_units"])
    ]
    assert allocated["hidden_units"] == expected
    assert allocated["vocabulary_rows"] < base["vocabulary_rows"]
    names = {c["name"] for c in candidates}
    assert {"allocated-int8", "student-int8"} <= names
    assert report["student"]["embedding_dim"] >= 2
    names = {(row["kind"], row["name"]) for row in report["sensitivity"]}
    assert len(names) == 3 + 26 and len(report["sensitivity"]) == 29 * 10
    assert (real_run / "sensitivity.png").stat().st_size > 10_000
    markdown = (real_run / "report.md").read_text()
    assert "sensitivity.png" in markdown and "## Sensitivity" in markdown
    assert "Student: " in markdown and "Pruned once at the sensitivity" in markdown
    assert "compression_steps.png" in markdown and "| test AUC |" in markdown
    assert (real_run / "compression_steps.png").stat().st_size > 10_000
    assert (
        "pareto.png" in markdown and (real_run / "pareto.png").stat().st_size > 10_000
    )


def test_score_the_csv_variant_with_ids(real_run, tmp_path, capsys):
    rows = shared_file("criteo/dac_tr_rx_2k.csv")
    out = tmp_path / "scores.csv"
    code = main(
        [
            "score",
            "--model",
            str(real_run / "compressed"),
            "--input",
            str(rows),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    with open(out) as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 1999
    assert table[0]["id"].startswith("100000")  # the file's own Id column
    probabilities = np.array([float(r["probability"]) for r in table])
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert probabilities.std() > 0
    assert "oov rate per field" in capsys.readouterr().out


def test_evaluate_and_bench_on_the_baseline(real_run, capsys):
    data = shared_file("criteo/dac_union_12k.txt")
    assert (
        main(["evaluate", "--model", str(real_run / "baseline"), "--data", str(data)])
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) >= {"auc", "logloss", "calibration", "normalized_entropy"}
    assert metrics["rows"] == 12494
    assert (
        main(["bench", "--model", str(real_run / "compressed"), "--calls", "50"]) == 0
    )
    bench = json.loads(capsys.readouterr().out)
    assert bench["bytes"]["total"] > 0 and bench["batch_4096"]["rows_per_s"] > 0


def _bad_file(tmp_path):
    source = shared_file("criteo/dac_union_12k.txt")
    lines = source.read_text().splitlines()[:60]
    fields = lines[20].split("\t")
    lines[20] = "\t".join(fields[:39])  # 39 fields
    fields = lines[30].split("\t")
    fields[5] = "abc"  # I5
    lines[30] = "\t".join(fields)
    fields = lines[40].split("\t")
    fields[0] = "2"  # label
    lines[40] = "\t".join(fields)
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_lines_are_listed_and_the_run_stops(real_run, tmp_path, capsys):
    bad = _bad_file(tmp_path)
    code = main(
        [
            "score",
            "--model",
            str(real_run / "compressed"),
            "--input",
            str(bad),
            "--output",
            str(tmp_path / "s.csv"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"{bad}:21:" in err and "39" in err
    assert f"{bad}:31: column I5:" in err and "abc" in err
    assert f"{bad}:41: column label:" in err
    assert "--on-bad-lines skip" in err
    assert not (tmp_path / "s.csv").exists()


def test_skip_policy_scores_the_rest_and_counts_reasons(real_run, tmp_path, capsys):
    bad = _bad_file(tmp_path)
    out = tmp_path / "s.csv"
    code = main(
        [
            "score",
            "--model",
            str(real_run / "compressed"),
            "--input",
            str(bad),
            "--output",
            str(out),
            "--on-bad-lines",
            "skip",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "skipped 3 bad lines" in printed
    assert "field_count 1" in printed and "not_integer 1" in printed
    assert "bad_label 1" in printed
    ids = [int(r["id"]) for r in csv.DictReader(open(out))]
    assert len(ids) == 57 and 21 not in ids and 31 not in ids and 41 not in ids


def test_prepare_train_compress_on_synthetic_rows(tmp_path, capsys):
    data = tmp_path / "synth.tsv"
    assert main(["synth", "--rows", "6000", "--out", str(data), "--seed", "1"]) == 0
    assert (tmp_path / "synth.tsv.proba").exists()
    cache = tmp_path / "cache"
    assert main(["prepare", "--data", str(data), "--out", str(cache)]) == 0
    model = tmp_path / "model"
    assert (
        main(
            [
                "train",
                "--cache",
                str(cache),
                "--out",
                str(model),
                "--epochs",
                "1",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    summary = json.loads((model / "train.json").read_text())
    assert summary["epochs"] == 1 and summary["samples_per_s"] > 0
    assert 0.5 < summary["best_valid_auc"] <= 1.0
    small = tmp_path / "small"
    assert (
        main(
            [
                "compress",
                "--model",
                str(model),
                "--data",
                str(data),
                "--out",
                str(small),
                "--steps",
                "1",
                "--fine-tune-epochs",
                "1",
                "--max-auc-drop",
                "1",
            ]
        )
        == 0
    )
    compress = json.loads((small / "compress.json").read_text())
    # a budget of 1 accepts the cut-off and the one schedule step
    assert [s["stage"] for s in compress["steps"]] == ["start", "cut-off", "prune"]
    assert compress["last_step"] == 2
    assert compress["steps"][2]["bytes"] < compress["steps"][0]["bytes"]
    # the distilled student is a candidate in every storage
    student = compress["student"]
    assert student["teacher"] == "step2" and 0.5 < student["valid_auc"] <= 1.0
    names = {c["name"] for c in compress["candidates"]}
    assert {"student-float32", "student-int8"} <= names


def test_prepare_streams_two_files_one_gzipped_and_train_reads_the_cache(
    tmp_path, capsys
):
    data = tmp_path / "synth.tsv"
    assert main(["synth", "--rows", "3000", "--out", str(data), "--seed", "2"]) == 0
    lines = data.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "day_0.tsv", tmp_path / "day_1.gz"
    first.write_bytes(b"".join(lines[:1800]))
    second.write_bytes(gzip.compress(b"".join(lines[1800:])))
    cache = tmp_path / "cache"
    argv = ["prepare", "--data", str(first), str(second), "--out", str(cache)]
    assert main([*argv, "--max-vocab", "500", "--split-seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "prepared 3,000 rows from 2 file(s)" in printed
    assert "split random (seed 3)" in printed and "max_vocab 500" in printed
    manifest = json.loads((cache / "manifest.json").read_text())
    assert [s["rows"] for s in manifest["sources"]] == [1800, 1200]
    assert not list(cache.glob(".intermediate-*"))

    model = tmp_path / "model"
    train = ["train", "--cache", str(cache), "--out", str(model), "--epochs", "1"]
    assert main([*train, "--threads", "1"]) == 0
    metadata = json.loads((model / "model.json").read_text())["metadata"]
    assert metadata["data"]["paths"] == [str(first), str(second)]
    assert metadata["data"]["split"]["method"] == "random (seed 3)"
    summary = json.loads((model / "train.json").read_text())
    assert 0.5 < summary["best_valid_auc"] <= 1.0

    (cache / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    assert main([*train, "--threads", "1"]) == 2
    assert "format_version 1 is not supported" in capsys.readouterr().err


def test_run_without_data_uses_synthetic_rows_and_reports_the_oracle(tmp_path):
    out = tmp_path / "demo"
    assert main(["run", "--out", str(out), "--rows", "8000", *QUICK]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["synthetic"] is True
    assert 0.6 < report["oracle_test_auc"] < 1.0
    assert "synthetic" in (out / "report.md").read_text()


def test_user_errors_exit_2_without_a_traceback(tmp_path, capsys):
    assert (
        main(["score", "--model", str(tmp_path), "--input", "x", "--output", "y"]) == 2
    )
    err = capsys.readouterr().err
    assert "slimctr score: error:" in err and "Traceback" not in err
    assert main(["evaluate", "--model", str(tmp_path / "nope"), "--data", "x"]) == 2


def test_score_unlabeled_gzip_rows_in_input_order(real_run, tmp_path):
    import gzip

    source = shared_file("criteo/dac_union_12k.txt")
    lines = source.read_text().splitlines()[-50:]
    unlabeled = ["\t".join(line.split("\t")[1:]) for line in lines]  # 39 fields
    path = tmp_path / "test.txt.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(unlabeled) + "\n")
    out = tmp_path / "s.csv"
    assert (
        main(
            [
                "score",
                "--model",
                str(real_run / "compressed"),
                "--input",
                str(path),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    table = list(csv.DictReader(open(out)))
    assert [int(r["id"]) for r in table] == list(range(1, 51))
    # the same rows with labels score the same: the label is not an input
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("\n".join(lines) + "\n")
    out2 = tmp_path / "s2.csv"
    assert (
        main(
            [
                "score",
                "--model",
                str(real_run / "compressed"),
                "--input",
                str(labeled),
                "--output",
                str(out2),
            ]
        )
        == 0
    )
    first = [r["probability"] for r in table]
    second = [r["probability"] for r in csv.DictReader(open(out2))]
    assert first == second


def test_compress_meets_its_budget_on_validation(tmp_path):
    data = tmp_path / "synth.tsv"
    assert main(["-q", "synth", "--rows", "8000", "--out", str(data)]) == 0
    model = tmp_path / "model"
    assert (
        main(
            [
                "-q",
                "train",
                "--data",
                str(data),
                "--out",
                str(model),
                "--epochs",
                "2",
                "--threads",
                "2",
            ]
        )
        == 0
    )
    small = tmp_path / "small"
    assert (
        main(
            [
                "-q",
                "compress",
                "--model",
                str(model),
                "--data",
                str(data),
                "--out",
                str(small),
                "--steps",
                "3",
                "--fine-tune-epochs",
                "1",
                "--max-auc-drop",
                "0.002",
                "--threads",
                "2",
            ]
        )
        == 0
    )
    summary = json.loads((small / "compress.json").read_text())
    floor = summary["steps"][0]["valid_auc"] - 0.002
    assert summary["chosen"]["valid_auc"] >= floor
    within = [c for c in summary["candidates"] if c["within_budget"]]
    assert summary["chosen"]["bytes"] == min(c["bytes"] for c in within)
    # every accepted step kept the budget; a step that broke it was rolled back
    for step in summary["steps"][1:]:
        assert step["rolled_back"] == (step["valid_auc"] < floor)


def test_serve_answers_on_loopback_and_stops_on_sigterm(real_run):
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slimctr.cli",
            "-q",
            "serve",
            "--model",
            str(real_run / "compressed"),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = process.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)", banner).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert json.loads(r.read())["status"] == "ok"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) in (0, 130)


def test_bench_compares_engines_in_one_run(real_run, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "-q",
                "bench",
                "--model",
                str(real_run / "compressed"),
                "--baseline",
                str(real_run / "baseline"),
                "--repeats",
                "1",
                "--threads",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    for engine in ("scorer", "torch_eager", "torchscript"):
        for batch in ("batch_1", "batch_64", "batch_4096"):
            figures = result["engines"][engine][batch]
            assert figures["p50_us"] <= figures["p95_us"] <= figures["p99_us"]
            assert figures["rows_per_s"] > 0
    assert {"onnxruntime_baseline", "onnxruntime_compressed"} <= set(result["engines"])
    assert out.with_suffix(".md").exists() and out.with_suffix(".png").exists()
    assert "| scorer |" in capsys.readouterr().out


def test_compress_warns_when_its_split_is_not_the_training_split(
    real_run, tmp_path, caplog
):
    data = shared_file("criteo/dac_union_12k.txt")
    argv = ["compress", "--model", str(real_run / "baseline"), "--data", str(data)]
    argv += ["--out", str(tmp_path / "c"), "--split", "0.5,0.25,0.25", "--steps", "1"]
    argv += ["--student-shrink", "0", "--cutoff-share", "0", "--threads", "2"]
    with caplog.at_level(logging.WARNING, logger="slimctr.commands"):
        assert main(argv) == 0
    warned = [r.getMessage() for r in caplog.records if "split was" in r.getMessage()]
    assert warned and "its split was 0.8,0.1,0.1" in warned[0]
    summary = json.loads((tmp_path / "c" / "compress.json").read_text())
    assert summary["student"] is None and summary["storage"] == "auto"


def test_a_run_refused_on_its_data_leaves_no_output_folder(tmp_path, capsys):
    data = tmp_path / "synth.tsv"
    assert main(["-q", "synth", "--rows", "1000", "--out", str(data)]) == 0
    lines = data.read_text().splitlines(keepends=True)
    # no clicks in the first 800 rows: the training split
    data.write_text(
        "".join("0" + line[1:] for line in lines[:800]) + "".join(lines[800:])
    )
    out = tmp_path / "run"
    assert main(["run", "--data", str(data), "--out", str(out)]) == 2
    assert "training split (800 rows, 0 clicks)" in capsys.readouterr().err
    assert not out.exists()
    # a folder that was there before stays
    out.mkdir()
    assert main(["run", "--data", str(data), "--out", str(out)]) == 2
    assert out.is_dir()
