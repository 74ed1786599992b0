"""Shared tiny worlds for the bad-input suite: simulated once per session, copied per test."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from churn_assets.settings import Paths
from churn_assets_tests.conftest import materialize_range

TINY_START = date(2026, 3, 1)
TINY_DAYS = 4
TINY_LAST = TINY_START + timedelta(days=TINY_DAYS - 1)


@pytest.fixture(scope="session")
def tiny_world_template(tmp_path_factory) -> Path:
    """Four clean days of 40 customers: bronze of a day takes a second, so each case stays fast."""
    from churn_assets.simulator import DirtConfig, SimConfig, simulate

    home = tmp_path_factory.mktemp("tiny_world")
    simulate(Paths(home), SimConfig(customers=40, days=TINY_DAYS, start=TINY_START, seed=5,
                                    dirt=DirtConfig.clean()))
    return home


@pytest.fixture
def tiny_world(tiny_world_template, tmp_path) -> Paths:
    home = tmp_path / "home"
    shutil.copytree(tiny_world_template, home)
    return Paths(home)


@pytest.fixture(scope="session")
def tiny_ingested_template(tiny_world_template, tmp_path_factory) -> Path:
    """The tiny world with every domain's bronze written once."""
    home = tmp_path_factory.mktemp("tiny_ingested") / "home"
    shutil.copytree(tiny_world_template, home)
    with dg.instance_for_test() as instance:
        assert bronze(Paths(home), instance, TINY_START, TINY_LAST).success
    return home


@pytest.fixture
def tiny_ingested(tiny_ingested_template, tmp_path) -> Paths:
    home = tmp_path / "home"
    shutil.copytree(tiny_ingested_template, home)
    return Paths(home)


def bronze(paths: Paths, instance, first: date, last: date, domains=None):
    """Bronze of some domains only: each case runs only the assets it is about."""
    from churn_assets.settings import DOMAINS

    keys = [dg.AssetKey(["bronze", name]) for domain in (domains or DOMAINS)
            for name in (domain, f"{domain}_quarantine")]
    return materialize_range(paths, first, last, instance, selection=keys)


def delta(paths: Paths, table: str) -> pl.DataFrame:
    location = paths.lake / table.replace(".", "/")
    return pl.read_delta(str(location)) if location.exists() else pl.DataFrame()


def rows_on(frame: pl.DataFrame, column: str, day: date) -> int:
    return frame.filter(pl.col(column) == day).height if frame.height else 0
