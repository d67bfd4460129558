from dataclasses import replace
from pathlib import Path

import pytest

from data.avazu import AVAZU
from data.schema import (
    CRITEO,
    DENSE_FEATURES,
    HOUR_FIELDS,
    LABEL,
    NUM_DENSE,
    NUM_SPARSE,
    SPARSE_FEATURES,
    Schema,
)
from data.schema_file import load_schema

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "schema_example.toml"
TOY = """\
name = "toy"
separator = "\\t"
header = false
columns = ["clicked", "price", "site", "device"]
label = "clicked"
dense_features = ["price"]
sparse_features = ["site", "device"]
"""


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "schema.toml"
    path.write_text(text)
    return path


def test_criteo_is_the_default_and_its_constants_stay():
    assert CRITEO.label == LABEL == "label"
    assert CRITEO.dense_features == DENSE_FEATURES and CRITEO.num_dense == NUM_DENSE
    assert CRITEO.sparse_fields == SPARSE_FEATURES and CRITEO.num_sparse == NUM_SPARSE
    assert (NUM_DENSE, NUM_SPARSE) == (13, 26)
    assert CRITEO.sparse_kind == "hex32" and not CRITEO.header


def test_dict_round_trip_is_exact():
    for schema in (CRITEO, AVAZU):
        assert Schema.from_dict(schema.to_dict(), "x") == schema


def test_hour_column_adds_two_fields_after_the_sparse_features():
    assert AVAZU.sparse_fields[-2:] == HOUR_FIELDS
    assert AVAZU.num_sparse == len(AVAZU.sparse_features) + 2 == 23
    assert AVAZU.num_dense == 0 and "hour" in AVAZU.feature_columns


def test_the_shipped_example_describes_avazu():
    assert load_schema(EXAMPLE) == AVAZU
    text = EXAMPLE.read_text()
    for key in Schema.__dataclass_fields__:
        assert f"\n{key} =" in text or f"# {key} =" in text, key


def test_load_a_headerless_schema(tmp_path):
    schema = load_schema(write(tmp_path, TOY))
    assert schema.separator == "\t" and schema.columns[0] == "clicked"
    assert schema.sparse_fields == ("site", "device")
    assert schema.id_column is None and schema.hour_column is None


def test_bad_toml_names_the_file_line_and_column(tmp_path):
    path = write(tmp_path, 'name = "toy"\nlabel = "a\n')
    with pytest.raises(ValueError, match=rf"{path}: not valid TOML: .*line 2"):
        load_schema(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ('sparse_feature = ["x"]', r"unknown key 'sparse_feature' \(did you mean "),
        ("header = 'yes'", r"key header: expected true or false, got 'yes'"),
        ('dense_features = "price"', r"key dense_features: expected a list"),
        ("dense_features = [1]", r"key dense_features: expected a string, got 1"),
        ('dense_features = ["site"]', r"key sparse_features: .*'site'.*dense_feat"),
        ('separator = ",,"', r"key separator: got ',,'; expected one character"),
        ('sparse_kind = "hex"', r"key sparse_kind: got 'hex'; accepted: 'hex32'"),
        ('hour_column = "weekday"', r"key hour_column: .*\['weekday'\].*rename"),
        ('id_column = " id"', r"key id_column: got ' id'; expected a non-empty"),
    ],
)
def test_bad_keys_give_value_errors_naming_the_key(tmp_path, change, message):
    base = TOY.replace("header = false", "header = true").replace("columns", "#")
    key = change.split(" ", 1)[0]
    lines = [line for line in base.splitlines() if not line.startswith(key + " ")]
    path = write(tmp_path, "\n".join([*lines, change]) + "\n")
    with pytest.raises(ValueError, match=message):
        load_schema(path)


def test_missing_keys_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"schema.toml: the key 'label' is missing"):
        load_schema(write(tmp_path, 'name = "toy"\nsparse_features = ["a"]\n'))
    with pytest.raises(ValueError, match=r"key sparse_features: the model needs"):
        load_schema(write(tmp_path, 'name = "toy"\nlabel = "y"\n'))


def test_columns_go_with_header_false_only(tmp_path):
    with pytest.raises(ValueError, match=r"key columns: a file without a header"):
        load_schema(write(tmp_path, TOY.replace("columns =", "# columns =")))
    with pytest.raises(ValueError, match=r"key columns: does not list \['device'\]"):
        load_schema(write(tmp_path, TOY.replace(', "device"]', "]", 1)))
    with pytest.raises(ValueError, match=r"key columns: only for a file without"):
        load_schema(write(tmp_path, TOY.replace("header = false", "header = true")))


def test_a_missing_file_and_a_folder_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--schema: no such file: .*nope"):
        load_schema(tmp_path / "nope.toml")
    with pytest.raises(IsADirectoryError, match=r"is a folder"):
        load_schema(tmp_path)


def test_direct_construction_checks_types():
    with pytest.raises(TypeError, match=r"sparse_features: expected a list"):
        Schema(name="x", label="y", sparse_features="abc")
    schema = Schema(name="x", label="y", sparse_features=["a", "b"])
    assert schema.sparse_features == ("a", "b")  # lists become tuples
    assert replace(schema, name="z").name == "z"
