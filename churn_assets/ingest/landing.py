"""The landing zone: ``landing/<domain>/<YYYY-MM-DD>/<files>`` and a completion marker.

A drop is complete when its marker exists. Writers (the simulator, ``churn-assets import``)
write every data file first and the marker last, through ``write_drop``. The marker records each
file's size and SHA-256, so a re-drop with corrected content has a new fingerprint and the sensor
ingests it again, while an untouched drop is ingested exactly once. Writing identical content
again is a no-op, so rerunning a writer never looks like a re-drop.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from churn_assets.settings import DOMAINS

MARKER = "_SUCCESS"

# Each domain's native export format; readers dispatch on the file suffix, not on this table.
DOMAIN_FORMATS: dict[str, str] = {
    "customers": "parquet",
    "payments": "csv",
    "events": "jsonl",
    "tickets": "jsonl",
    "marketing": "csv",
}
SUFFIXES = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}


class LandingError(ValueError):
    pass


@dataclass(frozen=True)
class Drop:
    """One complete daily drop of one domain."""

    domain: str
    day: date
    path: Path
    batch_id: str
    revision: int
    files: tuple[str, ...]
    fingerprint: str

    def file_paths(self) -> list[Path]:
        return [self.path / name for name in self.files]


def drop_dir(landing: Path, domain: str, day: date) -> Path:
    _check_domain(domain)
    return landing / domain / day.isoformat()


def write_drop(landing: Path, domain: str, day: date, files: dict[str, bytes]) -> Drop:
    """Write one day's files for a domain, then the marker. Replaces an earlier drop of that day.

    A replaced drop gets ``revision + 1``. Files are written to temporary names and renamed, so a
    reader never sees half a file; the marker is written last, so a sensor never sees half a drop.
    """
    _check_domain(domain)
    if not files:
        raise LandingError(f"a drop of {domain} for {day} needs at least one file")
    for name in files:
        if "/" in name or name.startswith((".", "_")):
            raise LandingError(f"invalid drop file name {name!r}")
    target = drop_dir(landing, domain, day)
    previous = read_drop(target)
    manifest = {
        name: {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        for name, content in sorted(files.items())
    }
    if previous is not None and _manifest(previous) == manifest:
        # Same content again (a rerun of the simulator or an import): not a re-drop.
        return previous
    revision = previous.revision + 1 if previous else 1
    if target.exists():
        # Remove the marker first: a crash midway leaves an incomplete drop, never a mixed one.
        (target / MARKER).unlink(missing_ok=True)
        for child in target.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    target.mkdir(parents=True, exist_ok=True)
    for name, content in sorted(files.items()):
        tmp = target / f".{name}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, target / name)
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    marker = {
        "domain": domain,
        "day": day.isoformat(),
        "revision": revision,
        "batch_id": f"{domain}-{day.isoformat()}-r{revision}-{digest[:10]}",
        "files": manifest,
    }
    tmp = target / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=1, sort_keys=True))
    os.replace(tmp, target / MARKER)
    drop = read_drop(target)
    assert drop is not None
    return drop


def read_drop(path: Path) -> Drop | None:
    """The drop in ``path`` if its marker is present, else ``None`` (absent or still being written)."""
    marker_path = path / MARKER
    try:
        raw = marker_path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        marker = json.loads(raw)
        files = tuple(sorted(marker["files"]))
        return Drop(
            domain=marker["domain"],
            day=date.fromisoformat(marker["day"]),
            path=path,
            batch_id=marker["batch_id"],
            revision=int(marker["revision"]),
            files=files,
            fingerprint=hashlib.sha256(raw).hexdigest()[:16],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise LandingError(f"{marker_path} is not a valid completion marker: {exc}") from exc


def find_drop(landing: Path, domain: str, day: date) -> Drop | None:
    return read_drop(drop_dir(landing, domain, day))


def list_drops(landing: Path, domain: str | None = None) -> list[Drop]:
    """Every complete drop, oldest day first. Folders without a marker are skipped."""
    domains = [domain] if domain else list(DOMAINS)
    drops = []
    for name in domains:
        _check_domain(name)
        root = landing / name
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if not child.is_dir() or not _is_day(child.name):
                continue
            drop = read_drop(child)
            if drop is not None:
                drops.append(drop)
    return drops


def _manifest(drop: Drop) -> dict:
    return json.loads((drop.path / MARKER).read_bytes())["files"]


def _is_day(name: str) -> bool:
    try:
        date.fromisoformat(name)
    except ValueError:
        return False
    return len(name) == 10


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise LandingError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}")
