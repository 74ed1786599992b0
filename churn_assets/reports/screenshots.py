"""``make screenshots``: render the latest scored day's brief, check it in headless Chromium
(no console error, every chart drawn, nothing fetched) and write its top as the README's PNG
(``docs/images/daily_brief.png``) and the whole page beside the page itself.

    python -m churn_assets.reports.screenshots [--day D] [--out docs/images]

Needs a data root with scores (``make run``) and Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from churn_assets.reports.browser import Chromium
from churn_assets.reports.inputs import latest_scored_day, write_brief


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churn_assets.reports.screenshots")
    parser.add_argument("--day", help="scored day (default: the latest)")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)

    from datetime import date

    from churn_assets.resources import build_resources, environment
    from churn_assets.settings import Paths, load_settings

    paths = Paths.from_env()
    settings = load_settings(paths)
    resources = build_resources(environment(), paths, settings)
    store, mlflow = resources["store"], resources["mlflow"]
    day = date.fromisoformat(args.day) if args.day else latest_scored_day(store)
    if day is None:
        print(f"nothing is scored under {paths.home}: run `make run` first", file=sys.stderr)
        return 2
    page, _ = write_brief(store, mlflow.location(), settings, day, paths.reports,
                          mlflow_ui=mlflow.ui_url)
    with Chromium(width=1280, height=1500) as browser:
        report = browser.load(page.resolve().as_uri())
        problems = list(report.console_errors)
        problems += [f"chart '{c['title']}' drew nothing" for c in report.charts
                     if not c["marks"] or not c["width"]]
        problems += [f"the page fetched {url}" for url in report.requests
                     if url != page.resolve().as_uri()]
        top = browser.screenshot(args.out / "daily_brief.png", full_page=False)
        full = browser.screenshot(page.with_suffix(".png"), full_page=True)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"{page}: {len(report.charts)} charts drawn, {len(report.console_errors)} console "
          f"errors; screenshots {top} and {full}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
