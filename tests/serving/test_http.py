import http.client
import json
import threading

import numpy as np
import pytest

from data.schema import DENSE_FEATURES, SPARSE_FEATURES
from serving.artifact import save_artifact
from serving.http import make_server, serve
from serving.scorer import Scorer
from tests.conftest import planted_batch, tiny_model

ROWS = 20


@pytest.fixture(scope="module")
def scorer_and_raw(tmp_path_factory):
    raw = planted_batch(300)
    model, encoder = tiny_model(raw)
    folder = save_artifact(tmp_path_factory.mktemp("http") / "m", model, encoder)
    return Scorer.load(folder), raw.take(slice(0, ROWS))


@pytest.fixture(scope="module")
def server(scorer_and_raw):
    server = serve(scorer_and_raw[0], host="127.0.0.1", port=0, max_body_bytes=20_000)
    yield server
    server.shutdown()
    server.server_close()


def request(server, method, path, body=None, headers=None):
    """``(status, decoded JSON)`` of one request on a fresh connection."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def score(server, payload):
    return request(server, "POST", "/score", json.dumps(payload).encode())


def field_rows(raw):
    """The rows of ``raw`` as JSON field objects; missing values left out."""
    rows = []
    for dense, sparse in zip(raw.dense, raw.sparse, strict=True):
        row = dict(zip(DENSE_FEATURES, dense.tolist(), strict=True))
        row = {n: int(v) for n, v in row.items() if not np.isnan(v)}
        for name, key in zip(SPARSE_FEATURES, sparse.tolist(), strict=True):
            if key >= 0:
                row[name] = f"{key:08x}"
        rows.append(row)
    return rows


def tsv_lines(raw, labeled):
    lines = []
    for label, dense, sparse in zip(raw.labels, raw.dense, raw.sparse, strict=True):
        fields = ["" if np.isnan(v) else str(int(v)) for v in dense]
        fields += [f"{k:08x}" if k >= 0 else "" for k in sparse]
        lines.append("\t".join([str(int(label))] * labeled + fields))
    return lines


def test_health_describes_the_model(server):
    status, payload = request(server, "GET", "/health")
    assert status == 200
    assert payload["status"] == "ok"
    model = payload["model"]
    assert model["embedding_dim"] == 4
    assert model["hidden_units"] == [16, 8]
    assert model["vocabulary_rows"] == sum(server.scorer.model.num_embeddings)


@pytest.mark.parametrize("form", ["rows", "lines", "labeled lines"])
def test_scores_match_the_scorer(server, scorer_and_raw, form):
    scorer, raw = scorer_and_raw
    if form == "rows":
        payload = {"rows": field_rows(raw)}
    else:
        payload = {"lines": tsv_lines(raw, labeled=form == "labeled lines")}
    status, got = score(server, payload)
    assert status == 200, got
    expected = scorer.predict_raw(raw)
    np.testing.assert_allclose(got["probabilities"], expected, rtol=0, atol=1e-7)
    assert np.std(expected) > 0


def test_empty_request_scores_nothing(server):
    assert score(server, {"rows": []}) == (200, {"probabilities": []})


def test_a_missing_key_is_a_missing_value(server, scorer_and_raw):
    _, raw = scorer_and_raw
    line = tsv_lines(raw.take(slice(0, 1)), labeled=False)[0].split("\t")
    line[0], line[13] = "", ""  # I1 and C1 missing
    row = field_rows(raw.take(slice(0, 1)))[0]
    row.pop("I1", None), row.pop("C1", None)
    by_row = score(server, {"rows": [row]})[1]["probabilities"]
    by_line = score(server, {"lines": ["\t".join(line)]})[1]["probabilities"]
    assert by_row == pytest.approx(by_line, abs=1e-7)


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b'{"rows": [', 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b'{"rows": [{"I1": NaN}]}', 400, "NaN is not JSON"),
        (b"[1, 2]", 400, "got a JSON list"),
        (b'{"rows": [], "lines": []}', 400, "got keys ['lines', 'rows']"),
        (b'{"rows": {"I1": 5}}', 400, "rows: got a JSON dict; expected a list"),
        (b'{"rows": [{}, 5]}', 400, "rows[1]: got a JSON int"),
        (b'{"rows": [{}, {"I99": 5}]}', 400, "rows[1]: unknown keys ['I99']"),
        (b'{"rows": [{"I2": [1]}]}', 400, "rows[0]: column I2: got a JSON list"),
        (b'{"rows": [{"I2": true}]}', 400, "rows[0]: column I2: got a JSON bool"),
        (b'{"rows": [{}, {}, {"I5": "abc"}]}', 400, "rows[2]: column I5: 'abc'"),
        (b'{"rows": [{"C3": "0x12"}]}', 400, "rows[0]: column C3: '0x12' is not"),
        (b'{"lines": ["a\\tb"]}', 400, "lines[0]: found 2 tab-separated fields"),
        (b'{"lines": [7]}', 400, "lines[0]: got a JSON int"),
    ],
)
def test_bad_bodies_get_400_naming_the_fault(server, body, status, message):
    got_status, payload = request(server, "POST", "/score", body)
    assert got_status == status
    assert message in payload["error"]
    assert "Traceback" not in payload["error"]


def test_bad_line_names_the_line_and_column(server, scorer_and_raw):
    lines = tsv_lines(scorer_and_raw[1].take(slice(0, 3)), labeled=True)
    fields = lines[2].split("\t")
    fields[1 + 4] = "2.5"  # I5
    lines[2] = "\t".join(fields)
    status, payload = score(server, {"lines": lines})
    assert status == 400
    assert "lines[2]: column I5: '2.5' is not an integer" in payload["error"]


def test_wrong_field_count_names_the_line(server, scorer_and_raw):
    lines = tsv_lines(scorer_and_raw[1].take(slice(0, 3)), labeled=False)
    lines[1] += "\textra\tmore"
    status, payload = score(server, {"lines": lines})
    assert status == 400
    assert "lines[1]: found 41 tab-separated fields; expected 39" in payload["error"]


def test_oversize_and_missing_length_get_413(server):
    status, payload = request(server, "POST", "/score", b" " * 20_001)
    assert status == 413
    assert "20001 bytes is over the limit of 20000" in payload["error"]

    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.putrequest("POST", "/score")
        connection.endheaders()  # no Content-Length
        response = connection.getresponse()
        assert response.status == 413
        assert "Content-Length is required" in json.loads(response.read())["error"]
    finally:
        connection.close()


@pytest.mark.parametrize(
    "method, path, status, message",
    [
        ("GET", "/nowhere", 404, "no such path '/nowhere'"),
        ("POST", "/health", 405, "POST is not allowed on /health; use GET"),
        ("GET", "/score", 405, "GET is not allowed on /score; use POST"),
        ("DELETE", "/score", 405, "DELETE is not allowed"),
    ],
)
def test_wrong_path_and_method(server, method, path, status, message):
    got_status, payload = request(server, method, path)
    assert got_status == status
    assert message in payload["error"]


def test_server_answers_after_errors(server, scorer_and_raw):
    scorer, raw = scorer_and_raw
    request(server, "POST", "/score", b"{oops")
    request(server, "POST", "/score", b" " * 30_000)
    request(server, "GET", "/nowhere")
    assert request(server, "GET", "/health")[0] == 200
    status, got = score(server, {"rows": field_rows(raw)})
    assert status == 200
    np.testing.assert_allclose(
        got["probabilities"], scorer.predict_raw(raw), rtol=0, atol=1e-7
    )


def test_concurrent_clients_get_their_own_answers(server, scorer_and_raw):
    scorer, raw = scorer_and_raw
    rows = field_rows(raw)
    expected = scorer.predict_raw(raw)
    errors = []

    def client(worker):
        host, port = server.server_address[:2]
        connection = http.client.HTTPConnection(host, port, timeout=10)
        try:
            for i in range(25):
                k = (worker * 25 + i) % ROWS
                body = json.dumps({"rows": [rows[k]]})
                connection.request("POST", "/score", body=body)
                response = connection.getresponse()
                got = json.loads(response.read())
                if (
                    response.status != 200
                    or abs(got["probabilities"][0] - expected[k]) > 1e-7
                ):
                    errors.append((worker, i, response.status, got))
        except Exception as err:  # collected, asserted below
            errors.append((worker, repr(err)))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []


def test_make_server_validates_its_arguments(scorer_and_raw):
    scorer = scorer_and_raw[0]
    with pytest.raises(TypeError, match="scorer: expected a Scorer"):
        make_server(object())
    with pytest.raises(ValueError, match="port: got 70000"):
        make_server(scorer, port=70000)
    with pytest.raises(ValueError, match="max_body_bytes: got 0"):
        make_server(scorer, max_body_bytes=0)


def test_models_of_another_schema_are_refused(tmp_path):
    from ctr.config import ModelConfig
    from ctr.wide_deep import WideDeep
    from data.encoder import Encoder
    from data.schema import Schema

    schema = Schema(name="toy", label="y", sparse_features=("a",))
    raw = planted_batch(50)
    toy = raw.__class__(
        raw.labels, raw.dense[:, :0], raw.sparse[:, :1], raw.ids, raw.lines
    )
    encoder = Encoder.fit(toy, schema=schema)
    model = WideDeep(ModelConfig(4, (8,)), encoder.num_embeddings, 0)
    with pytest.raises(ValueError, match=r"reads Criteo rows only.*schema is toy"):
        make_server(Scorer(model, encoder))
