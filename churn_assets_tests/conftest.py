"""Tiny simulated worlds in temporary directories, and helpers to run real Dagster materializations."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from datetime import date
from pathlib import Path

import dagster as dg
import httpx
import pytest

from churn_assets.definitions import build_definitions
from churn_assets.lab.runner import RANGE_END_TAG, RANGE_START_TAG
from churn_assets.settings import DOMAINS, Paths

# Hand-written test drops are not simulated, so the public local key would be refused for them.
os.environ.setdefault("CHURN_PII_KEY", "churn-assets-test-key")

WORLD_START = date(2026, 1, 1)
WORLD_DAYS = 12


# The slowest modules, longest first (seconds on 2 cores, `make test` of 2026-12-07). `make test`
# hands whole modules to 2 workers in collection order (--dist loadfile --no-loadscope-reorder),
# so starting with these balances the workers; by default xdist orders modules by their number of
# tests, and the two longest could end up on one worker after the other.
SLOWEST_MODULES = (
    "churn_assets_tests/assets/test_parity_engines.py",  # 282
    "churn_assets_tests/assets/test_model.py",  # 292
    "churn_assets_tests/test_ui.py",  # 160
    "churn_assets_tests/assets/test_medallion.py",  # 110
    "churn_assets_tests/lab/test_reproducible.py",  # 71
    "churn_assets_tests/serve/test_api.py",  # 63
    "churn_assets_tests/lab/test_loop.py",  # 46
    "churn_assets_tests/steps/test_upkeep.py",  # 30
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(SLOWEST_MODULES)}

    def module_rank(item: pytest.Item) -> int:
        return rank.get(item.nodeid.split("::", 1)[0], len(rank))

    items.sort(key=module_rank)  # stable: the other modules and every module's tests keep order


def free_port() -> int:
    """A loopback port nothing listens on now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_served(url: str, process: subprocess.Popen, what: str,
                      timeout: float = 150) -> None:
    """Poll ``url`` until it answers 200, failing early if ``process`` (the server) exits."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"{what} exited"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{what} did not start"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def dirty_world_template(tmp_path_factory) -> Path:
    """A small, deliberately dirty world, simulated once per session; tests copy it."""
    from churn_assets.simulator import DirtConfig, SimConfig, simulate

    home = tmp_path_factory.mktemp("dirty_world")
    dirt = DirtConfig(
        duplicate_rate=0.03, late_rate=0.05, malformed_rate=0.02, null_rate=0.02,
        mixed_tz_rate=0.5, redrop_rate=0.1, new_column_day=0.5,
    )
    simulate(
        Paths(home),
        SimConfig(customers=200, days=WORLD_DAYS, start=WORLD_START, seed=11, dirt=dirt),
    )
    return home


@pytest.fixture
def dirty_world(dirty_world_template, tmp_path) -> Paths:
    home = tmp_path / "home"
    shutil.copytree(dirty_world_template, home)
    return Paths(home)


@pytest.fixture
def instance():
    # One Dagster instance per test: SQLite storage is not shared between tests.
    with dg.instance_for_test() as instance:
        yield instance


def materialize_range(paths: Paths, first: date, last: date, instance, selection=None):
    """Run the real ``churn_daily`` job over ``[first, last]`` as one single-run backfill."""
    defs = build_definitions(paths)
    job = defs.resolve_job_def("churn_daily")
    return job.execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
        asset_selection=selection,
        raise_on_error=False,
    )


BRONZE_KEYS = [
    dg.AssetKey(["bronze", name]) for domain in DOMAINS for name in (domain, f"{domain}_quarantine")
]


def materialize_bronze(paths: Paths, first: date, last: date, instance):
    """Only the bronze layer: for tests whose hand-written drops are not meant to reach silver."""
    return materialize_range(paths, first, last, instance, selection=BRONZE_KEYS)
