"""A JSON scoring server over one :class:`~serving.scorer.Scorer`, standard
library only: ``GET /health`` describes the model, ``POST /score`` turns rows
(field objects or raw Criteo TSV lines) into click probabilities.

Request bodies are validated like the lines of a file (``data.criteo``); every
error is answered with ``{"error": "..."}`` and a 4xx status, and the server
keeps serving. Tracebacks go to the log, never to the client.
"""

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd

from data.bad_lines import BadLinesError
from data.criteo import parse_frame
from data.schema import CRITEO, DENSE_FEATURES, LABEL, SPARSE_FEATURES
from serving.scorer import Scorer

logger = logging.getLogger(__name__)

FEATURES = DENSE_FEATURES + SPARSE_FEATURES
NUM_FIELDS = len(FEATURES)  # 39 in a line without a label, 40 with one
_ACCEPTED_KEYS = frozenset(FEATURES) | {LABEL}  # a row's label is ignored
_BODY_KEYS = ("rows", "lines")
_MAX_LISTED = 20  # bad rows named in one error message
_SOCKET_TIMEOUT_S = 30.0  # a client that stalls mid-body frees its thread


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message for the client."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ScoringServer(ThreadingHTTPServer):
    """A threading HTTP server holding the scorer and the body size limit."""

    daemon_threads = True  # a hung client never blocks shutdown

    def __init__(
        self, address: tuple[str, int], scorer: Scorer, max_body_bytes: int
    ) -> None:
        self.scorer = scorer
        self.max_body_bytes = max_body_bytes
        self.model_description = describe_model(scorer)
        super().__init__(address, ScoringHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def make_server(
    scorer: Scorer,
    host: str = "127.0.0.1",
    port: int = 0,
    max_body_bytes: int = 1_000_000,
) -> ScoringServer:
    """A server bound to ``host:port`` (``port=0``: any free port), not yet
    serving; see ``server.server_address`` for the port it got."""
    if not isinstance(scorer, Scorer):
        raise TypeError(f"scorer: expected a Scorer, got {type(scorer).__name__}")
    if scorer.encoder.schema != CRITEO:
        # TODO: parse request rows with the artifact's schema (data.tabular), so
        # that Avazu and TOML-schema models can be served too
        raise ValueError(
            f"scorer: the HTTP endpoint reads Criteo rows only, and this model's "
            f"schema is {scorer.encoder.schema.name}; score its files with "
            "slimctr score instead"
        )
    if not isinstance(host, str) or not host:
        raise ValueError(f"host: got {host!r}; expected an address such as 127.0.0.1")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port: got {port!r}; expected an integer in 0..65535")
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or max_body_bytes < 1
    ):
        raise ValueError(
            f"max_body_bytes: got {max_body_bytes!r}; expected an integer >= 1"
        )
    return ScoringServer((host, port), scorer, max_body_bytes)


def serve(
    scorer: Scorer,
    host: str = "127.0.0.1",
    port: int = 0,
    max_body_bytes: int = 1_000_000,
) -> ScoringServer:
    """A server already answering in a background thread, for tests and
    benchmarks; stop it with ``server.shutdown(); server.server_close()``."""
    server = make_server(scorer, host, port, max_body_bytes)
    thread = threading.Thread(
        target=server.serve_forever, name="slimctr-http", daemon=True
    )
    thread.start()
    return server


def run_server(server: ScoringServer) -> None:
    """Serve in this thread until interrupted (Ctrl-C), then close the socket."""
    logger.info("serving %s on %s", server.model_description, server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("interrupted; stopping the server")
    finally:
        server.server_close()


def describe_model(scorer: Scorer) -> dict:
    """The small description ``GET /health`` returns."""
    model = scorer.model
    return {
        "embedding_dim": model.config.embedding_dim,
        "hidden_units": list(model.config.hidden_units),
        "num_embeddings": list(model.num_embeddings),  # rows per sparse table
        "vocabulary_rows": int(sum(model.num_embeddings)),
    }


# --- request bodies -----------------------------------------------------------


def parse_body(body: bytes) -> tuple[str, pd.DataFrame]:
    """``("rows" or "lines", frame of I1..I13, C1..C26)`` from a ``/score``
    body, or a ``RequestError`` naming what is wrong."""
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as err:
        raise RequestError(
            HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {err}"
        ) from err

    expected = 'expected {"rows": [{...}, ...]} or {"lines": ["...", ...]}'
    if not isinstance(payload, dict):
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            f"body: got a JSON {type(payload).__name__}; {expected}",
        )
    keys = sorted(payload)
    if len(keys) != 1 or keys[0] not in _BODY_KEYS:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"body: got keys {keys}; {expected}")
    key = keys[0]
    items = payload[key]
    if not isinstance(items, list):
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            f"{key}: got a JSON {type(items).__name__}; expected a list",
        )
    frame = _frame_from_rows(items) if key == "rows" else _frame_from_lines(items)
    return key, frame


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON; send null for a missing value")


def _frame_from_rows(rows: list) -> pd.DataFrame:
    """Field objects -> frame; a missing key is a missing value."""
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                f"rows[{index}]: got a JSON {type(row).__name__}; expected an "
                'object such as {"I1": 5, "C1": "68fd1e64"}',
            )
        unknown = sorted(set(row) - _ACCEPTED_KEYS)
        if unknown:
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                f"rows[{index}]: unknown keys {unknown[:5]}; accepted: I1..I13, "
                "C1..C26 (and label, which is ignored)",
            )
        for name, value in row.items():
            # bool is an int to Python, and a list would reach pandas whole
            if isinstance(value, bool) or not isinstance(
                value, str | int | float | type(None)
            ):
                raise RequestError(
                    HTTPStatus.BAD_REQUEST,
                    f"rows[{index}]: column {name}: got a JSON "
                    f"{type(value).__name__}; expected a string, a number or null",
                )
    return pd.DataFrame.from_records(rows, columns=list(FEATURES))


def _frame_from_lines(lines: list) -> pd.DataFrame:
    """Raw Criteo TSV lines -> frame of strings; a 40-field line's label is
    dropped unread, and one trailing newline is allowed."""
    fields = []
    for index, line in enumerate(lines):
        if not isinstance(line, str):
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                f"lines[{index}]: got a JSON {type(line).__name__}; expected a "
                "string of tab-separated fields",
            )
        parts = line.removesuffix("\n").removesuffix("\r").split("\t")
        if len(parts) == NUM_FIELDS + 1:
            parts = parts[1:]
        elif len(parts) != NUM_FIELDS:
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                f"lines[{index}]: found {len(parts)} tab-separated fields; "
                f"expected {NUM_FIELDS} (I1..I13, C1..C26) or {NUM_FIELDS + 1} "
                "(label first)",
            )
        fields.append(parts)
    return pd.DataFrame(fields, columns=list(FEATURES), dtype=object)


def bad_rows_message(err: BadLinesError, key: str) -> str:
    """``err`` retold with 0-based positions in the request's list, e.g.
    ``rows[2]: column I5: 'abc' is not an integer``."""
    listed = err.bad_lines[:_MAX_LISTED]
    parts = [f"found {err.total} bad {key[:-1]}{'s' * (err.total != 1)}:"]
    parts += [
        f"{key}[{b.line - 1}]: "
        + (f"column {b.column}: " if b.column else "")
        + b.detail
        for b in listed
    ]
    if err.num_faults > len(listed):
        parts.append(f"... and {err.num_faults - len(listed)} more")
    return "\n".join(parts)


# --- the handler --------------------------------------------------------------


class ScoringHandler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive, closed after any error."""

    protocol_version = "HTTP/1.1"
    server_version = "slimctr"
    timeout = _SOCKET_TIMEOUT_S
    server: ScoringServer

    _ROUTES = {"/health": "GET", "/score": "POST"}

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        start = time.perf_counter()
        self._rows = 0
        try:
            status, payload = self._answer()
        except RequestError as err:
            status, payload = err.status, {"error": err.message}
            logger.info("%s %s -> %d: %s", self.command, self.path, status, err)
        except Exception:
            logger.exception("%s %s failed", self.command, self.path)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            payload = {"error": "internal error; see the server log"}
        self._send_json(status, payload)
        logger.debug(
            "%s %s %d rows=%d %.2fms",
            self.command,
            self.path,
            status,
            self._rows,
            (time.perf_counter() - start) * 1e3,
        )

    def _answer(self) -> tuple[HTTPStatus, dict]:
        path = self.path.split("?", 1)[0]
        method = self._ROUTES.get(path)
        if method is None:
            accepted = ", ".join(f"{m} {p}" for p, m in self._ROUTES.items())
            raise RequestError(
                HTTPStatus.NOT_FOUND, f"no such path {path!r}; accepted: {accepted}"
            )
        if self.command != method:
            raise RequestError(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{self.command} is not allowed on {path}; use {method}",
            )
        if path == "/health":
            return HTTPStatus.OK, {
                "status": "ok",
                "model": self.server.model_description,
            }
        return HTTPStatus.OK, self._score()

    def _score(self) -> dict:
        key, frame = parse_body(self._read_body())
        self._rows = len(frame)
        if not len(frame):
            return {"probabilities": []}
        try:
            batch = parse_frame(frame, source=key)
        except BadLinesError as err:
            raise RequestError(
                HTTPStatus.BAD_REQUEST, bad_rows_message(err, key)
            ) from err
        probabilities = self.server.scorer.predict_raw(batch)
        return {"probabilities": probabilities.tolist()}

    def _read_body(self) -> bytes:
        """The body, after checking Content-Length against the limit."""
        limit = self.server.max_body_bytes
        header = self.headers.get("Content-Length")
        if header is None:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "Content-Length is required (chunked bodies are not accepted); "
                f"the limit is {limit} bytes",
            )
        try:
            length = int(header)
        except ValueError:
            length = -1
        if length < 0:
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                f"Content-Length: got {header!r}; expected a byte count >= 0",
            )
        if length > limit:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes is over the limit of {limit} bytes; "
                "send fewer rows per request",
            )
        body = self.rfile.read(length)
        if len(body) != length:
            raise RequestError(
                HTTPStatus.BAD_REQUEST,
                f"body ended after {len(body)} of {length} bytes",
            )
        return body

    def _send_json(self, status: HTTPStatus, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", self._ROUTES[self.path.split("?", 1)[0]])
        if status >= 400:
            # The body may be unread; closing keeps the next request in step.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain=None) -> None:
        """The standard library's own errors (bad request line, unknown
        method, headers too long), answered as JSON like ours."""
        status = HTTPStatus(code)
        payload = {"error": message or status.phrase}
        logger.info("request refused with %d: %s", code, payload["error"])
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if getattr(self, "command", None) != "HEAD" and code >= 200:
            self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        pass  # _dispatch logs each request once, with its rows and time

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s " + format, self.address_string(), *args)
