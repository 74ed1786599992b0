"""``make bench``: throughput and peak memory of the simulator and of bronze ingest.

Each phase runs in its own process so that its peak RSS is its own. Results are appended to
``BENCHMARKS.md`` (and printed). Not a test: numbers depend on the machine.

    python -m churn_assets.bench [--customers N] [--days N] [--home DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from churn_assets.settings import DOMAINS

RESULTS = Path("BENCHMARKS.md")


def _phase_simulate(home: Path, customers: int, days: int, domains: str) -> dict:
    from churn_assets.settings import Paths
    from churn_assets.simulator import SimConfig, simulate

    config = SimConfig(customers=customers, days=days, seed=1, domains=tuple(domains.split(",")))
    began = time.perf_counter()
    summary = simulate(Paths(home), config)
    seconds = time.perf_counter() - began
    rows = {d: n for d, n in summary.rows.items() if d in config.domains}
    return {"seconds": seconds, "rows": rows, "total_rows": sum(rows.values())}


def _phase_bronze(home: Path, days: int) -> dict:
    import dagster as dg

    from churn_assets.definitions import build_definitions, daily_partitions
    from churn_assets.runner import run_range
    from churn_assets.settings import Paths, load_settings

    paths = Paths(home)
    defs = build_definitions(paths)
    first = date(2026, 1, 1)
    last = first + timedelta(days=days + 3)
    began = time.perf_counter()
    with dg.instance_for_test() as instance:
        run_range(defs, daily_partitions(load_settings(paths)), first, last, instance)
    seconds = time.perf_counter() - began
    rows = {
        table.name: pl.scan_delta(str(table)).select(pl.len()).collect().item()
        for table in sorted((paths.lake / "bronze").iterdir())
    }
    return {"seconds": seconds, "rows": rows, "total_rows": sum(rows.values())}


def _run_phase(args: list[str]) -> dict:
    """Run one phase in a child process, so each phase's peak RSS is its own."""
    out = subprocess.run(
        [sys.executable, "-m", "churn_assets.bench", "--phase", *args],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churn_assets.bench")
    parser.add_argument("--customers", type=int, default=1_100_000,
                        help="customers of the transactions world (default: ~10M payments)")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--all-domains-customers", type=int, default=60_000,
                        help="customers of the smaller world that writes all five domains")
    parser.add_argument("--home", type=Path, help="data root to use (default: a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the data root afterwards")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:
        name, home, *rest = args.phase
        if name == "simulate":
            result = _phase_simulate(Path(home), int(rest[0]), int(rest[1]), rest[2])
        else:
            result = _phase_bronze(Path(home), int(rest[0]))
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(result))
        return 0

    home = args.home or Path(tempfile.mkdtemp(prefix="churn-bench-"))
    everything = home / "all_domains"
    try:
        print(f"simulating {args.customers:,} customers x {args.days} days, writing customers and "
              f"payments, into {home} …", flush=True)
        sim = _run_phase(["simulate", str(home), str(args.customers), str(args.days),
                          "customers,payments"])
        print(f"  {sim['total_rows']:,} rows in {sim['seconds']:.1f}s", flush=True)
        print("ingesting every drop into bronze …", flush=True)
        bronze = _run_phase(["bronze", str(home), str(args.days)])
        print(f"  {bronze['total_rows']:,} rows in {bronze['seconds']:.1f}s", flush=True)
        print(f"simulating {args.all_domains_customers:,} customers x {args.days} days, all five "
              "domains …", flush=True)
        full = _run_phase(["simulate", str(everything), str(args.all_domains_customers),
                           str(args.days), ",".join(DOMAINS)])
        print(f"  {full['total_rows']:,} rows in {full['seconds']:.1f}s", flush=True)
    finally:
        if not args.keep and not args.home:
            shutil.rmtree(home, ignore_errors=True)

    payments = sim["rows"].get("payments", 0)
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {platform.node()}, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
        "",
        f"`python -m churn_assets.bench --customers {args.customers} --days {args.days} "
        f"--all-domains-customers {args.all_domains_customers}`",
        "",
        "| phase | rows | payments rows | seconds | rows/s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        _row("simulate, writing customers + payments", sim, payments),
        _row("bronze ingest of that world (Delta)", bronze, bronze["rows"].get("payments", 0)),
        _row(f"simulate {args.all_domains_customers:,} customers, all five domains", full,
             full["rows"].get("payments", 0)),
        "",
        "The simulator always generates every domain (payments depend on sessions); the first "
        "row counts only what it wrote.  ",
        f"simulated rows per domain: {json.dumps(sim['rows'])}  ",
        f"bronze rows per table: {json.dumps(bronze['rows'])}  ",
        f"all-domain world rows: {json.dumps(full['rows'])}",
        "",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    header = "# Benchmarks\n\nWritten by `make bench`; newest first.\n\n"
    old = RESULTS.read_text().removeprefix(header) if RESULTS.exists() else ""
    RESULTS.write_text(header + text + "\n" + old)
    print(f"results written to {RESULTS}")
    return 0


def _row(name: str, result: dict, payments: int) -> str:
    rate = result["total_rows"] / result["seconds"]
    return (
        f"| {name} | {result['total_rows']:,} | {payments:,} | {result['seconds']:.1f} | "
        f"{rate:,.0f} | {result['peak_rss_mb']:,} |"
    )


if __name__ == "__main__":
    sys.exit(main())
