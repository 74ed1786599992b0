"""The landing zone: ``landing/<domain>/<YYYY-MM-DD>/<files>`` and a completion marker.

A drop is complete when its marker exists. Writers (the simulator, ``churn-assets import``)
write every data file first and the marker last, through ``write_drop``. The marker records each
file's size and SHA-256, so a re-drop with corrected content has a new fingerprint and the sensor
ingests it again, while an untouched drop is ingested exactly once. Writing identical content
again is a no-op, so rerunning a writer never looks like a re-drop.

The marker is a contract, checked by ``verify_drop`` before bronze replaces anything: its day and
domain are its folder's, and every file it lists is on disk with the listed size and SHA-256. A
marker copied from another day, a file changed after the marker, a marker that lists nothing while
data files sit beside it, or an empty (Hadoop-style) ``_SUCCESS`` fails that one drop with a
``DropError`` naming the folder and what differs; other drops are unaffected.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
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


# Who wrote a drop. Only the simulator's drops may be hashed with the public local PII key.
SIMULATOR = "simulator"


class LandingError(ValueError):
    pass


class DropError(LandingError):
    """One drop breaks the marker contract; ``problems`` say what differs, in a person's words."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = Path(path)
        self.problems = list(problems)
        super().__init__(f"drop {self.path}: " + "; ".join(self.problems))


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
    # name -> {"bytes": int, "sha256": str}, as the writer recorded it.
    manifest: dict = field(default_factory=dict, compare=False, hash=False)
    # The writer says this drop deliberately holds fewer records than the one it replaced.
    source_shrank: bool = False
    source: str | None = None

    def file_paths(self) -> list[Path]:
        return [self.path / name for name in self.files]


def drop_dir(landing: Path, domain: str, day: date) -> Path:
    _check_domain(domain)
    return landing / domain / day.isoformat()


def write_drop(
    landing: Path,
    domain: str,
    day: date,
    files: dict[str, bytes],
    source_shrank: bool = False,
    source: str | None = None,
) -> Drop:
    """Write one day's files for a domain, then the marker. Replaces an earlier drop of that day.

    A replaced drop gets ``revision + 1``. Files are written to temporary names and renamed, so a
    reader never sees half a file; the marker is written last, so a sensor never sees half a drop.
    ``source_shrank`` records that the source now holds fewer records for the day than before (a
    corrected export), the only case in which bronze replaces a day with fewer rows; it is also
    what allows a drop without files (the day has no records any more). ``source`` names the
    writer (``SIMULATOR`` for simulated worlds).
    """
    _check_domain(domain)
    if not files and not source_shrank:
        raise LandingError(f"a drop of {domain} for {day} needs at least one file")
    for name in files:
        if "/" in name or name.startswith((".", "_")):
            raise LandingError(f"invalid drop file name {name!r}")
    target = drop_dir(landing, domain, day)
    try:
        previous = read_drop(target)
    except DropError:
        previous = None  # a broken marker is replaced like any other drop
    manifest = {
        name: {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        for name, content in sorted(files.items())
    }
    same = (manifest, source, source_shrank)
    if previous is not None and (previous.manifest, previous.source, previous.source_shrank) == same:
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
    if source_shrank:
        marker["source_shrank"] = True
    if source:
        marker["source"] = source
    tmp = target / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=1, sort_keys=True))
    os.replace(tmp, target / MARKER)
    drop = read_drop(target)
    assert drop is not None
    return drop


def read_drop(path: Path) -> Drop | None:
    """The drop in ``path`` if its marker is present, else ``None`` (absent or still being written).

    A marker that is not ours (empty, as Hadoop writes it, or not JSON) or that belongs to another
    folder raises ``DropError``; the files themselves are checked by ``verify_drop``.
    """
    path = Path(path)
    marker_path = path / MARKER
    try:
        raw = marker_path.read_bytes()
    except FileNotFoundError:
        return None
    if not raw.strip():
        raise DropError(path, [
            f"its {MARKER} is empty (a Hadoop-style marker): churn-assets needs the JSON marker "
            "that lists each file's size and SHA-256; write drops with `churn-assets import` or "
            "`write_drop`, or delete the empty marker until the drop is rewritten"])
    try:
        marker = json.loads(raw)
        manifest = {
            str(name): {"bytes": int(entry["bytes"]), "sha256": str(entry["sha256"])}
            for name, entry in marker["files"].items()
        }
        drop = Drop(
            domain=marker["domain"],
            day=date.fromisoformat(marker["day"]),
            path=path,
            batch_id=marker["batch_id"],
            revision=int(marker["revision"]),
            files=tuple(sorted(manifest)),
            fingerprint=hashlib.sha256(raw).hexdigest()[:16],
            manifest=manifest,
            source_shrank=bool(marker.get("source_shrank", False)),
            source=marker.get("source"),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DropError(path, [f"its {MARKER} is not a valid completion marker ({exc!r})"]) from exc
    problems = []
    if _is_day(path.name) and drop.day.isoformat() != path.name:
        problems.append(
            f"the marker is for day {drop.day} but the folder is {path.name} (a marker copied "
            "from another day?); nothing of this folder is ingested until they agree")
    if path.parent.name in DOMAINS and drop.domain != path.parent.name:
        problems.append(f"the marker is for domain {drop.domain!r} but the folder is under "
                        f"{path.parent.name!r}")
    for name in drop.files:
        if "/" in name or "\\" in name or name.startswith((".", "_")) or name in ("", ".."):
            problems.append(f"the marker lists {name!r}, which is not a file name of a drop")
    if problems:
        raise DropError(path, problems)
    return drop


def unlisted_files(drop: Drop) -> list[str]:
    """Files in the drop's folder that its marker does not list (hidden writer temporaries aside)."""
    if not drop.path.is_dir():
        return []
    return sorted(
        child.name for child in drop.path.iterdir()
        if child.name != MARKER and not child.name.startswith(".") and child.name not in drop.manifest
    )


def verify_drop(drop: Drop) -> list[str]:
    """Check the files against the marker; the unlisted files, or ``DropError`` on a mismatch.

    Every listed file must be on disk with the listed size and SHA-256 (hashed in chunks, so a
    big file costs one read and no memory). A marker that lists nothing while data files are in
    the folder is a mismatch unless the writer said the source shrank to nothing.
    """
    problems = []
    for name, entry in sorted(drop.manifest.items()):
        path = drop.path / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{name} is listed in the marker but missing")
            continue
        except OSError as exc:
            problems.append(f"{name} cannot be read ({exc.strerror or exc})")
            continue
        if size != entry["bytes"]:
            problems.append(f"{name} has {size:,} bytes, the marker says {entry['bytes']:,} "
                            "(changed or truncated after the marker was written)")
            continue
        try:
            digest = _sha256(path)
        except OSError as exc:
            problems.append(f"{name} cannot be read ({exc.strerror or exc})")
            continue
        if digest != entry["sha256"]:
            problems.append(f"{name} has SHA-256 {digest[:12]}…, the marker says "
                            f"{entry['sha256'][:12]}… (changed after the marker was written)")
    unlisted = unlisted_files(drop)
    if not drop.manifest and unlisted and not drop.source_shrank:
        problems.append(f"the marker lists no files but the folder holds {', '.join(unlisted)}")
    if problems:
        raise DropError(drop.path, problems)
    return unlisted


def checked_drop(landing: Path, domain: str, day: date) -> tuple[Drop | None, list[str]]:
    """``find_drop`` plus ``verify_drop``: the day's drop and its unlisted files, or ``DropError``."""
    drop = find_drop(landing, domain, day)
    if drop is None:
        return None, []
    return drop, verify_drop(drop)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def find_drop(landing: Path, domain: str, day: date) -> Drop | None:
    return read_drop(drop_dir(landing, domain, day))


def list_drops(landing: Path, domain: str | None = None) -> list[Drop]:
    """Every complete drop with a valid marker, oldest day first. Folders without a marker are
    skipped, and so are broken markers (``scan_drops`` reports them)."""
    return scan_drops(landing, domain)[0]


def scan_drops(landing: Path, domain: str | None = None) -> tuple[list[Drop], list[DropError]]:
    """Every complete drop, and every folder whose marker breaks the contract (not its files:
    ``verify_drop`` reads those). Folders without a marker are still being written: neither."""
    domains = [domain] if domain else list(DOMAINS)
    drops, broken = [], []
    for name in domains:
        _check_domain(name)
        root = landing / name
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if not child.is_dir() or not _is_day(child.name):
                continue
            try:
                drop = read_drop(child)
            except DropError as error:
                broken.append(error)
                continue
            if drop is not None:
                drops.append(drop)
    return drops, broken


def _is_day(name: str) -> bool:
    try:
        date.fromisoformat(name)
    except ValueError:
        return False
    return len(name) == 10


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise LandingError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}")


def drop_records(drop: Drop) -> int:
    """Records in a drop's files, without parsing them: Parquet rows from the footer, else the
    non-blank lines after a CSV header or of a JSON-lines file. Enough to tell an empty drop
    (a day without rows is still delivered, marker and all) and to report what landed."""
    total = 0
    for path in drop.file_paths():
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            total += pq.ParquetFile(path).metadata.num_rows
            continue
        with path.open("rb") as handle:
            lines = sum(1 for line in handle if line.strip())
        total += max(0, lines - 1) if path.suffix == ".csv" else lines
    return total
