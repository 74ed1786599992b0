"""The landing zone as a Dagster resource, so assets and sensors never build paths themselves."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg

from churn_assets.ingest.landing import Drop, find_drop, list_drops


class LandingZone(dg.ConfigurableResource):
    """Where daily drops arrive: ``<root>/<domain>/<YYYY-MM-DD>/`` with a completion marker."""

    root: str

    @property
    def path(self) -> Path:
        return Path(self.root)

    def drop(self, domain: str, day: date) -> Drop | None:
        return find_drop(self.path, domain, day)

    def drops(self, domain: str | None = None) -> list[Drop]:
        return list_drops(self.path, domain)

    def has_partial_drop(self, domain: str, day: date) -> bool:
        """A folder for the day exists but its marker does not: still being written."""
        folder = self.path / domain / day.isoformat()
        return folder.is_dir() and self.drop(domain, day) is None
