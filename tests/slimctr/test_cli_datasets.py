"""The command line on data that is not Criteo: a made-up ad log described
only by a schema TOML written here, and the real Avazu sample."""

import csv
import json

import numpy as np
import pytest

from slimctr.cli import main
from tests.conftest import QUICK_COMPRESSION, shared_file

SCHEMA = """\
name = "toy"
separator = ";"
header = true
label = "clicked"
id_column = "ad_id"
dense_features = ["price"]
sparse_features = ["site", "device"]
hour_column = "hour"
"""
# a small network and few epochs: these tests check the mechanics
SMALL = """\
[encoder]
min_count = 1
[model]
embedding_dim = 4
hidden_units = [32, 16]
[train]
batch_size = 64
epochs = 3
learning_rate = 0.01
embedding_learning_rate = 0.03
"""
QUICK = QUICK_COMPRESSION
TOY_FIELDS = ["site", "device", "hour_of_day", "weekday"]


def write_toy(path, rows: int = 1500, seed: int = 0) -> list[str]:
    """A ';'-separated ad log whose clicks follow site and price; returns the
    ids, 20-digit numbers past int64."""
    rng = np.random.default_rng(seed)
    site = rng.integers(0, 20, rows)
    device = rng.choice(["phone", "tablet", "desktop"], rows)
    price = rng.gamma(2.0, 10.0, rows).round(2)
    missing = rng.random(rows) < 0.1
    logit = -1.5 + 2.5 * (site % 2 == 0) + 0.05 * (price - 20.0)
    clicked = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    ids = [str(10**19 + 7919 * i) for i in range(rows)]
    lines = ["ad_id;clicked;hour;price;site;device"]
    for i in range(rows):
        hour = f"1410{21 + i * 9 // rows:02d}{i % 24:02d}"
        value = "" if missing[i] else f"{price[i]}"
        lines.append(
            f"{ids[i]};{int(clicked[i])};{hour};{value};s{site[i]};{device[i]}"
        )
    path.write_text("\n".join(lines) + "\n")
    return ids


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    data, schema, config = folder / "ads.csv", folder / "ads.toml", folder / "s.toml"
    ids = write_toy(data)
    schema.write_text(SCHEMA)
    config.write_text(SMALL)
    out = folder / "run"
    argv = ["run", "--data", str(data), "--schema", str(schema), "--out", str(out)]
    assert main([*argv, "--config", str(config), *QUICK]) == 0
    return {"out": out, "data": data, "schema": schema, "ids": ids}


def test_run_on_a_schema_file_writes_the_report(toy):
    out = toy["out"]
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["dataset"] == "toy" and report["data"]["rows"] == 1500
    base, comp = report["baseline"], report["compressed"]
    assert comp["bytes"] < base["bytes"]
    assert 0.6 < base["test_auc"] <= 1.0
    fields = [r["name"] for r in report["sensitivity"] if r["kind"] == "field"]
    assert list(dict.fromkeys(fields)) == TOY_FIELDS
    assert "(real, toy)" in (out / "report.md").read_text()
    encoder = json.loads((out / "compressed" / "encoder.json").read_text())
    assert encoder["schema"]["name"] == "toy"
    assert encoder["sparse_features"] == TOY_FIELDS


def test_score_and_evaluate_take_the_schema_from_the_artifact(toy, tmp_path, capsys):
    scores = tmp_path / "scores.csv"
    model = str(toy["out"] / "compressed")
    argv = ["score", "--model", model, "--input", str(toy["data"])]
    assert main([*argv, "--output", str(scores)]) == 0
    assert "oov rate per field: site " in capsys.readouterr().out
    with open(scores, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == toy["ids"]
    assert all(0.0 < float(r["probability"]) < 1.0 for r in rows)

    assert main(["evaluate", "--model", model, "--data", str(toy["data"])]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["rows"] == 1500 and 0.6 < metrics["auc"] <= 1.0


def test_bad_rows_name_line_and_column(toy, tmp_path, capsys):
    lines = toy["data"].read_text().splitlines()
    lines[3] = lines[3].replace(";", ";x", 1)  # the label of line 4
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    model = str(toy["out"] / "baseline")
    assert main(["evaluate", "--model", model, "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4: column clicked: 'x0' is not 0 or 1" in err or (
        f"{bad}:4: column clicked: 'x1' is not 0 or 1" in err
    )
    assert "Traceback" not in err
    argv = ["evaluate", "--model", model, "--data", str(bad), "--on-bad-lines", "skip"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["skipped_lines"] == {"bad_label": 1}


def test_options_that_do_not_fit_are_refused(toy, tmp_path, capsys):
    model = str(toy["out"] / "compressed")
    data = str(toy["data"])
    out = str(tmp_path / "x.csv")
    cases = [
        (
            ["score", "--model", model, "--input", data, "--output", out]
            + ["--dataset", "avazu"],
            "--dataset: the schema avazu has other features than the schema toy",
        ),
        (
            ["evaluate", "--model", model, "--data", data, "--format", "tsv"],
            "--format tsv: applies to Criteo files only",
        ),
        (
            ["run", "--out", str(tmp_path / "r"), "--dataset", "avazu"],
            "--dataset/--schema: describe the file given with --data",
        ),
        (
            ["run", "--out", str(tmp_path / "r"), "--data", data, "--schema"]
            + [str(tmp_path / "nope.toml")],
            "--schema: no such file",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--out", "r", "--dataset", "avazu", "--schema", "s.toml"])
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.fixture(scope="module")
def avazu_run(tmp_path_factory):
    data = shared_file("avazu/avazu_head_10k.csv")
    folder = tmp_path_factory.mktemp("avazu")
    config = folder / "small.toml"
    config.write_text(SMALL)
    out = folder / "run"
    argv = ["run", "--data", str(data), "--dataset", "avazu", "--out", str(out)]
    assert main([*argv, "--config", str(config), *QUICK]) == 0
    return out, data


def test_run_on_the_real_avazu_sample(avazu_run, tmp_path):
    out, data = avazu_run
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["dataset"] == "avazu" and report["data"]["rows"] == 9999
    assert 0.6 < report["baseline"]["test_auc"] <= 1.0
    assert report["compressed"]["bytes"] < report["baseline"]["bytes"]
    fields = {r["name"] for r in report["sensitivity"] if r["kind"] == "field"}
    assert {"site_id", "device_ip", "hour_of_day", "weekday"} <= fields

    scores = tmp_path / "scores.csv"
    argv = ["score", "--model", str(out / "compressed"), "--input", str(data)]
    assert main([*argv, "--output", str(scores)]) == 0
    with open(data, newline="") as a, open(scores, newline="") as b:
        expected = [row["id"] for row in csv.DictReader(a)]
        written = [row["id"] for row in csv.DictReader(b)]
    assert written == expected and max(map(len, written)) == 20
