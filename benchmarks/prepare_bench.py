"""Throughput and peak memory of ``slimctr prepare`` on a planted file of 5M
rows, beside pandas' plain ``read_csv`` of the same file, in one run:

    .venv/bin/python benchmarks/prepare_bench.py --dir /tmp/slimctr-bench-prepare

The file is made once with ``slimctr synth`` (kept for later runs). The input
is read once first so that every timed run finds it in the page cache; then
prepare and read_csv run alternately, ``--repeats`` times each, each in its own
subprocess, whose wall time, CPU time and peak RSS come from ``os.wait4``.
Figures are medians; the load average is recorded beside each run, as the
machine may be shared. ``startup_s`` is the time ``slimctr --version`` takes
(interpreter and imports), so prepare's rows/s is given with and without it.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
SLIMCTR = str(VENV_BIN / "slimctr")
TARGET_ROWS_PER_S = 400_000
TARGET_RSS_BYTES = 1.5e9
READ_CSV = (
    "import json, sys, time\n"
    "import pandas as pd\n"
    "started = time.perf_counter()\n"
    "frame = pd.read_csv(sys.argv[1], sep='\\t', header=None)\n"
    "print(json.dumps({'rows': len(frame), 's': time.perf_counter() - started}))\n"
)


def load_average() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def run(command: list[str]) -> dict:
    """Wall time, CPU times and peak RSS of one subprocess, and its stdout."""
    load = load_average()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode})")
    return {
        "wall_s": wall,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
        "loadavg_before": load,
        "loadavg_after": load_average(),
        "stdout": stdout.strip(),
    }


def make_data(folder: Path, rows: int) -> Path:
    path = folder / f"synth-{rows}.tsv"
    if path.is_file() and path.stat().st_size > 0:
        print(f"reusing {path}")
        return path
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [SLIMCTR, "-q", "synth", "--rows", str(rows), "--out", str(path)], check=True
    )
    return path


def warm_up(path: Path) -> None:
    """Read the file once, so that no timed run pays for the disk."""
    with open(path, "rb") as handle:
        while handle.read(16 << 20):
            pass


def time_prepare(data: Path, cache: Path, workers: int) -> dict:
    shutil.rmtree(cache, ignore_errors=True)
    result = run(
        [SLIMCTR, "-q", "prepare", "--data", str(data), "--out", str(cache)]
        + ["--workers", str(workers)]
    )
    inner = re.search(r" in ([0-9.]+) s \(", result["stdout"])
    result["inside_s"] = float(inner.group(1)) if inner else None
    return result


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summarise(runs: list[dict], rows: int) -> dict:
    wall = median(runs, "wall_s")
    return {
        "rows": rows,
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "user_s": median(runs, "user_s"),
        "sys_s": median(runs, "sys_s"),
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("/tmp/slimctr-bench-prepare"),
        help="folder for the data file and the cache",
    )
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows to plant")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each")
    parser.add_argument("--workers", type=int, default=2, help="prepare --workers")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    if args.rows < 5_000_000:
        print(f"warning: {args.rows:,} rows; the targets are set for >= 5M")

    data = make_data(args.dir, args.rows)
    cache = args.dir / "cache"
    warm_up(data)
    startup = statistics.median(run([SLIMCTR, "--version"])["wall_s"] for _ in range(3))
    prepare_runs, pandas_runs = [], []
    for repeat in range(args.repeats):
        prepare_runs.append(time_prepare(data, cache, args.workers))
        pandas_runs.append(run([sys.executable, "-c", READ_CSV, str(data)]))
        print(
            f"round {repeat + 1}: prepare {prepare_runs[-1]['wall_s']:.1f} s, "
            f"read_csv {pandas_runs[-1]['wall_s']:.1f} s, "
            f"load {pandas_runs[-1]['loadavg_after']}"
        )

    prepare = summarise(prepare_runs, args.rows)
    prepare["startup_s"] = startup
    prepare["rows_per_s_without_startup"] = args.rows / (prepare["wall_s"] - startup)
    prepare["meets_targets"] = {
        "rows_per_s": prepare["rows_per_s"] >= TARGET_ROWS_PER_S,
        "peak_rss": prepare["peak_rss_bytes"] <= TARGET_RSS_BYTES,
    }
    pandas = summarise(pandas_runs, args.rows)
    report = {
        "data": str(data),
        "data_bytes": data.stat().st_size,
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "repeats": args.repeats,
        "command": f"slimctr -q prepare --data {data} --out {cache} "
        f"--workers {args.workers}",
        "prepare": prepare,
        "read_csv": pandas,
        "prepare_over_read_csv_wall": prepare["wall_s"] / pandas["wall_s"],
    }
    print(
        f"prepare   {prepare['wall_s']:6.1f} s  {prepare['rows_per_s']:>9,.0f} rows/s "
        f"({prepare['rows_per_s_without_startup']:,.0f} without the "
        f"{startup:.1f} s start-up)  peak RSS {prepare['peak_rss_bytes'] / 1e9:.2f} GB"
    )
    print(
        f"read_csv  {pandas['wall_s']:6.1f} s  {pandas['rows_per_s']:>9,.0f} rows/s"
        f"  peak RSS {pandas['peak_rss_bytes'] / 1e9:.2f} GB"
    )
    print(
        f"prepare / read_csv wall time: {report['prepare_over_read_csv_wall']:.2f}; "
        f"targets (>= {TARGET_ROWS_PER_S:,} rows/s, <= 1.5 GB): "
        f"{prepare['meets_targets']}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
