"""Load test of the scoring server (serving/http.py) on loopback.

Starts the server on 127.0.0.1 (any free port) in this process, warms it up,
runs concurrent keep-alive clients, reports throughput and latency
percentiles, then checks that bad requests get a 4xx with a message and that
/health still answers:

    .venv/bin/python benchmarks/load_test.py --model runs/real/compressed \
        --clients 8 --requests 2000 --rows-per-request 1

``--requests`` is per client; clients also stop at ``--time-limit`` seconds.
Rows are random but well formed (random hex sparse values, small integers).
"""

import argparse
import http.client
import json
import logging
import sys
import threading
import time

import numpy as np

from data.schema import DENSE_FEATURES, SPARSE_FEATURES
from serving.http import serve
from serving.scorer import Scorer

HOST = "127.0.0.1"
WARMUP_REQUESTS = 50


def random_rows(count: int, seed: int = 0) -> list[dict]:
    """Field objects with about 10% of values missing (keys left out)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        row = {
            n: int(v)
            for n, v in zip(DENSE_FEATURES, rng.integers(0, 500, 13), strict=True)
        }
        keys = rng.integers(0, 1 << 32, 26, dtype=np.uint64)
        row |= {n: f"{int(k):08x}" for n, k in zip(SPARSE_FEATURES, keys, strict=True)}
        for name in rng.choice(list(row), size=4, replace=False):
            del row[name]
        rows.append(row)
    return rows


def post(connection, body: bytes, path: str = "/score"):
    connection.request("POST", path, body=body)
    response = connection.getresponse()
    return response.status, response.read()


def client(port, bodies, requests, deadline, latencies, errors) -> None:
    """Send ``requests`` bodies on one keep-alive connection, or until the
    deadline; a connection closed by an error is reopened."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        for i in range(requests):
            if time.perf_counter() > deadline:
                break
            start = time.perf_counter()
            try:
                status, _ = post(connection, bodies[i % len(bodies)])
            except (OSError, http.client.HTTPException):
                status = -1
                connection.close()
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(status)
    finally:
        connection.close()


def run_load(port, bodies, clients, requests, time_limit) -> dict:
    per_client = [([], []) for _ in range(clients)]
    deadline = time.perf_counter() + time_limit
    threads = [
        threading.Thread(
            target=client, args=(port, bodies[c::clients], requests, deadline, *lists)
        )
        for c, lists in enumerate(per_client)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start

    latencies = np.array([t for lat, _ in per_client for t in lat]) * 1e3
    errors = sum(len(err) for _, err in per_client)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "req_per_s": len(latencies) / elapsed,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
    }


def check_errors(port: int, max_body_bytes: int) -> list[str]:
    """Bad requests, each on its own connection: a 4xx with a message."""
    good_line = "\t".join(["1"] * 13 + ["68fd1e64"] * 26)
    cases = {
        "malformed JSON": b'{"rows": [',
        "wrong field count": json.dumps({"lines": [good_line + "\tx\ty"]}).encode(),
        "oversize body": b" " * (max_body_bytes + 1),
    }
    failures = []
    for name, body in cases.items():
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            status, raw = post(connection, body)
        finally:
            connection.close()
        message = json.loads(raw).get("error", "")
        ok = 400 <= status < 500 and bool(message)
        print(f"  {name:18s} -> {status} {message.splitlines()[0]!r}")
        if not ok:
            failures.append(name)

    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request("GET", "/health")
        status = connection.getresponse().status
    finally:
        connection.close()
    print(f"  {'health after':18s} -> {status}")
    if status != 200:
        failures.append("health after errors")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="artifact folder")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=2000, help="per client")
    parser.add_argument("--rows-per-request", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds")
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000)
    args = parser.parse_args()
    for name in ("clients", "requests", "rows_per_request"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected an integer >= 1")
    logging.basicConfig(level=logging.WARNING)

    scorer = Scorer.load(args.model)
    rows = random_rows(256 * args.rows_per_request)
    r = args.rows_per_request
    bodies = [
        json.dumps({"rows": rows[i : i + r]}).encode() for i in range(0, len(rows), r)
    ]
    server = serve(scorer, HOST, 0, args.max_body_bytes)
    port = server.server_address[1]
    try:
        run_load(port, bodies, 1, WARMUP_REQUESTS, args.time_limit)  # warm-up
        result = run_load(port, bodies, args.clients, args.requests, args.time_limit)
        print(
            f"clients {args.clients}  rows/request {r}  "
            f"requests {result['requests']}  errors {result['errors']}  "
            f"{result['seconds']:.1f} s  {result['req_per_s']:.0f} req/s  "
            f"p50 {result['p50_ms']:.2f} ms  p95 {result['p95_ms']:.2f} ms  "
            f"p99 {result['p99_ms']:.2f} ms"
        )
        print("error handling:")
        failures = check_errors(port, args.max_body_bytes)
    finally:
        server.shutdown()
        server.server_close()
    if failures or result["errors"]:
        print(f"FAILED: {failures or str(result['errors']) + ' request errors'}")
        sys.exit(1)


if __name__ == "__main__":
    main()
