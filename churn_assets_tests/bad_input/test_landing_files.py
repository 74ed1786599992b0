"""Bad files inside complete, correctly marked drops: each record is in bronze or quarantine, a
file that cannot be read at all refuses its own drop only, and a writer that fails midway never
leaves a drop that looks complete."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from churn_assets.ingest.bronze import PARTITION_COLUMN
from churn_assets.ingest.landing import MARKER, LandingError, find_drop, write_drop
from churn_assets_tests.bad_input.conftest import TINY_LAST, TINY_START, bronze, delta, rows_on

DAY2 = TINY_START + timedelta(days=1)


def held(paths, domain, day):
    return (rows_on(delta(paths, f"bronze.{domain}"), PARTITION_COLUMN, day)
            + rows_on(delta(paths, f"bronze.{domain}_quarantine"), PARTITION_COLUMN, day))


def header_of(paths, domain="payments") -> bytes:
    path = find_drop(paths.landing, domain, TINY_START).file_paths()[0]
    return path.read_bytes().split(b"\n")[0].rstrip(b"\r")


def test_bom_crlf_and_nul_bytes_in_a_csv_drop(tiny_world, instance):
    paths = tiny_world
    header = header_of(paths)
    width = header.count(b",") + 1
    good = b",".join([b"T1", b"O1", b"C00000001", b"charge", b"paid", b"1.00"]
                     + [b""] * (width - 6))
    nul = good.replace(b"T1", b"T\x002")
    content = b"\xef\xbb\xbf" + b"\r\n".join([header, good, nul]) + b"\r\n"
    write_drop(paths.landing, "payments", DAY2, {"odd.csv": content}, source_shrank=True)
    assert bronze(paths, instance, DAY2, DAY2, ["payments"]).success
    rows = delta(paths, "bronze.payments")
    assert held(paths, "payments", DAY2) == 2  # both records, as rows or quarantined
    day_rows = rows.filter(rows[PARTITION_COLUMN] == DAY2)
    assert "T1" in day_rows["transaction_id"].to_list()
    assert not any("\ufeff" in c or c.endswith("\r") for c in rows.columns)


def test_a_jsonl_drop_cut_mid_line_quarantines_the_cut_line(tiny_world, instance):
    paths = tiny_world
    (path,) = find_drop(paths.landing, "events", DAY2).file_paths()
    lines = path.read_bytes().rstrip(b"\n").split(b"\n")
    cut = b"\n".join(lines[:-1] + [lines[-1][: len(lines[-1]) // 2]])
    write_drop(paths.landing, "events", DAY2, {path.name: cut}, source_shrank=True)
    assert bronze(paths, instance, DAY2, DAY2, ["events"]).success
    quarantined = delta(paths, "bronze.events_quarantine")
    assert quarantined.height == 1 and quarantined["_row_number"].to_list() == [len(lines)]
    assert held(paths, "events", DAY2) == len(lines)


def test_a_truncated_parquet_file_refuses_only_its_drop(tiny_ingested, instance):
    paths = tiny_ingested
    (path,) = find_drop(paths.landing, "customers", DAY2).file_paths()
    before = held(paths, "customers", DAY2)
    content = path.read_bytes()
    write_drop(paths.landing, "customers", DAY2, {path.name: content[: len(content) // 2]})
    result = bronze(paths, instance, TINY_START, TINY_LAST, ["customers"])
    assert not result.success
    (check,) = [e for e in result.get_asset_check_evaluations()
                if e.check_name == "drops_match_markers"]
    assert f"customers/{DAY2}" in check.description
    assert held(paths, "customers", DAY2) == before > 0
    for day in (TINY_START, TINY_LAST):
        assert held(paths, "customers", day) > 0


def test_a_directory_where_a_file_should_be_refuses_its_drop(tiny_ingested, instance):
    paths = tiny_ingested
    (path,) = find_drop(paths.landing, "payments", DAY2).file_paths()
    before = held(paths, "payments", DAY2)
    path.unlink()
    path.mkdir()
    result = bronze(paths, instance, TINY_START, TINY_LAST, ["payments"])
    assert not result.success
    assert held(paths, "payments", DAY2) == before
    assert held(paths, "payments", TINY_LAST) > 0


FULL_DISK_WRITER = """
import resource, signal, sys
from datetime import date
from pathlib import Path
from churn_assets.ingest.landing import write_drop
# Past 64 KiB every write fails, as on a full disk (EFBIG here, ENOSPC there).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
try:
    write_drop(Path(sys.argv[1]), "payments", date.fromisoformat(sys.argv[2]),
               {sys.argv[3]: b"a,b\\n" + b"1,2\\n" * 100_000})
except OSError as error:
    print(error.strerror)
    sys.exit(3)
"""


def test_a_write_failing_midway_leaves_no_complete_drop(tiny_ingested, instance):
    paths = tiny_ingested
    folder = paths.landing / "payments" / DAY2.isoformat()
    before = held(paths, "payments", DAY2)
    name = find_drop(paths.landing, "payments", DAY2).files[0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.run(
        [sys.executable, "-c", FULL_DISK_WRITER, str(paths.landing), DAY2.isoformat(), name],
        env=env, capture_output=True, text=True, timeout=120)
    assert writer.returncode == 3, writer.stderr[-2000:]
    assert not (folder / MARKER).exists()  # incomplete: the sensor and bronze wait for it
    result = bronze(paths, instance, DAY2, DAY2, ["payments"])
    assert result.success and held(paths, "payments", DAY2) == before
    # Writing again once there is room completes the drop.
    write_drop(paths.landing, "payments", DAY2, {name: b"a,b\n1,2\n"}, source_shrank=True)
    assert find_drop(paths.landing, "payments", DAY2) is not None


def test_a_drop_file_name_that_escapes_the_folder_is_refused(tiny_world):
    with pytest.raises(LandingError, match="invalid drop file name"):
        write_drop(tiny_world.landing, "payments", DAY2, {"../x.csv": b"a\n"})
