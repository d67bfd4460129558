import pickle

import pytest

from data.bad_lines import (
    MAX_LISTED,
    ON_BAD_LINES,
    BadLine,
    BadLinesError,
    SkipCounter,
    check_on_bad_lines,
)


def _bad(line: int, column: str | None = "I5") -> BadLine:
    if column is None:
        return BadLine("data.txt", line, None, "field_count", "expected 40 fields")
    return BadLine("data.txt", line, column, "not_integer", "'abc' is not an integer")


def test_bad_line_str_names_file_line_and_column():
    assert str(_bad(17)) == "data.txt:17: column I5: 'abc' is not an integer"


def test_bad_line_str_without_column():
    assert str(_bad(3, None)) == "data.txt:3: expected 40 fields"


def test_bad_line_rejects_unknown_reason():
    with pytest.raises(ValueError, match="reason: got 'oops'"):
        BadLine("data.txt", 1, None, "oops", "")


def test_error_message_lists_lines_total_and_fix():
    err = BadLinesError([_bad(3, None), _bad(5), _bad(5, "C2")], total=2)

    assert isinstance(err, ValueError)
    assert err.total == 2 and err.num_faults == 3 and len(err.bad_lines) == 3
    lines = str(err).splitlines()
    assert lines[0] == "found 2 bad lines:"
    assert lines[1] == "data.txt:3: expected 40 fields"
    assert lines[2] == "data.txt:5: column I5: 'abc' is not an integer"
    assert lines[-1] == (
        "total: 2 bad lines (3 faults); use --on-bad-lines skip to drop them"
    )
    assert "more" not in str(err)


def test_error_total_defaults_to_distinct_lines():
    assert BadLinesError([_bad(5), _bad(5, "C2"), _bad(9)]).total == 2


def test_error_message_lists_the_first_hundred_then_says_how_many_more():
    bad = [_bad(line) for line in range(1, 151)]
    err = BadLinesError(bad[:MAX_LISTED], total=150, num_faults=150)

    lines = str(err).splitlines()
    assert len(lines) == 1 + MAX_LISTED + 2
    assert lines[MAX_LISTED] == str(bad[MAX_LISTED - 1])
    assert lines[-2] == "... and 50 more"
    assert lines[-1].startswith("total: 150 bad lines;")


def test_error_with_custom_fix():
    err = BadLinesError([_bad(2)], fix="fix or drop those rows")
    assert str(err).endswith("total: 1 bad line; fix or drop those rows")


def test_error_survives_pickling():
    err = BadLinesError([_bad(3, None), _bad(5)], total=2, num_faults=2)
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err)
    assert back.bad_lines == err.bad_lines and back.total == 2


def test_skip_counter_counts_by_reason_and_summarises():
    counter = SkipCounter()
    counter.add("bad_label")
    counter.add("field_count")
    counter.add("not_integer", 1)
    counter.add("bad_sparse_value", 0)

    assert counter.total == 3
    assert counter.counts == {"bad_label": 1, "field_count": 1, "not_integer": 1}
    expected = "skipped 3 bad lines: field_count 1, not_integer 1, bad_label 1"
    assert counter.summary() == expected
    assert str(counter) == expected


def test_skip_counter_empty_summary():
    assert SkipCounter().summary() == "skipped 0 bad lines"


def test_skip_counter_rejects_bad_arguments():
    counter = SkipCounter()
    with pytest.raises(ValueError, match="reason: got 'typo'"):
        counter.add("typo")
    with pytest.raises(ValueError, match="count: got -1"):
        counter.add("bad_label", -1)


def test_check_on_bad_lines():
    assert ON_BAD_LINES == ("error", "skip")
    assert check_on_bad_lines("skip") == "skip"
    with pytest.raises(ValueError, match="on_bad_lines: got 'warn'; accepted: 'error'"):
        check_on_bad_lines("warn")
