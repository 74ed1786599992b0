"""Dagster's SQLite event log, with one open connection per database instead of one per event.

Dagster's ``SqliteEventLogStorage`` builds a new SQLAlchemy engine and SQLite connection for every
event it stores (``NullPool``), twice for a materialization (the run's database and the index).
A daily run of the asset graph writes a few events per asset and partition, so at a month per
run most of ``churn-assets run``'s time was spent opening and closing those connections (half of
the samples of a profile of a 10,000-customer run, see BENCHMARKS.md). This subclass keeps one
engine per database for the life of the instance: same files, same schema, readable by any
Dagster process (the webserver and daemon may use either class). Writers in other processes still
take SQLite's file lock for each transaction, so sharing the files stays safe.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

# A run writes its own database and the index; a few more cover the daemon's and UI's reads.
OPEN_DATABASES = 8
# How long a write waits for another process's lock, as Dagster's own storage does.
BUSY_TIMEOUT_SECONDS = 30


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` keeping its engines (configured the same way in dagster.yaml)."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard), poolclass=StaticPool,
                # One connection, used under ``_db_lock`` by whichever thread holds it.
                connect_args={"timeout": BUSY_TIMEOUT_SECONDS,
                              "check_same_thread": False})
        self._engines[shard] = engine
        while len(self._engines) > OPEN_DATABASES:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    def wipe(self) -> None:
        # The run databases are deleted: no connection may outlive its file.
        self._close()
        super().wipe()

    def dispose(self) -> None:
        self._close()
        super().dispose()

    def _close(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


def instance_yaml(home: Path) -> str:
    """A dagster.yaml for a Dagster home with no configuration of its own: the storage Dagster
    would use there by default (same directories, so existing runs stay readable), with this
    event log."""
    parts = (("run_storage", "dagster._core.storage.runs", "SqliteRunStorage", "history"),
             ("event_log_storage", __name__, PooledSqliteEventLogStorage.__name__,
              "history/runs"),
             ("schedule_storage", "dagster._core.storage.schedules", "SqliteScheduleStorage",
              "schedules"))
    return "".join(f"{key}:\n  module: {module}\n  class: {cls}\n  config:\n"
                   f"    base_dir: {json.dumps(str(home / where))}\n"
                   for key, module, cls, where in parts) + "telemetry:\n  enabled: false\n"
