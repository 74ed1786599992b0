"""The landing zone as a Dagster resource, so assets and sensors never build paths themselves."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import dagster as dg
from pydantic import Field

from churn_assets.ingest.bronze import BronzeBatch, ingest_drops
from churn_assets.ingest.landing import (
    Drop,
    DropError,
    checked_drop,
    find_drop,
    list_drops,
    scan_drops,
)


class LandingZone(dg.ConfigurableResource):
    """Where daily drops arrive: ``<root>/<domain>/<YYYY-MM-DD>/`` with a completion marker."""

    root: str

    @property
    def path(self) -> Path:
        return Path(self.root)

    def drop(self, domain: str, day: date) -> Drop | None:
        return find_drop(self.path, domain, day)

    def checked_drop(self, domain: str, day: date) -> tuple[Drop | None, list[str]]:
        """The day's drop verified against its marker, and its unlisted files; ``DropError`` when
        the marker or the files break the contract. Both engines' bronze call this."""
        return checked_drop(self.path, domain, day)

    def drops(self, domain: str | None = None) -> list[Drop]:
        return list_drops(self.path, domain)

    def scan(self, domain: str | None = None) -> tuple[list[Drop], list[DropError]]:
        """Every complete drop, and every folder whose marker breaks the contract."""
        return scan_drops(self.path, domain)

    def has_partial_drop(self, domain: str, day: date) -> bool:
        """A folder for the day exists but its marker does not: still being written."""
        folder = self.path / domain / day.isoformat()
        try:
            return folder.is_dir() and self.drop(domain, day) is None
        except DropError:
            return False

    def ingest(self, domain: str, drops: list[Drop], ingested_at: datetime) -> BronzeBatch:
        """Parse the drops' files into bronze rows and quarantined rows (Polars, in process)."""
        return ingest_drops(domain, drops, ingested_at, self.path)


class SparkLandingZone(LandingZone):
    """The same landing zone with its files read by Spark and parsed on the executors.

    Finding drops (markers, fingerprints) still reads ``root`` from this process; the files'
    contents are read by Spark (``binaryFile``), so they are parsed where the cluster is and
    bronze rows never pass through the driver. Same parser, same quarantine reasons.
    """

    spark: dg.ConfigurableResource | None = Field(
        None, description="The resource owning the session (as for SparkTableStore); None: "
        "the process's active or default session.")

    def ingest(self, domain: str, drops: list[Drop], ingested_at: datetime):
        from churn_assets.resources.spark import session_for
        from churn_assets.resources.spark.landing import ingest_drops_spark

        return ingest_drops_spark(session_for(self.spark), domain, drops, ingested_at, self.path)
