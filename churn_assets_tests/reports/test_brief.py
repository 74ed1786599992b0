"""The daily brief as the pipeline renders it: one self-contained page per scored day, linked
from the asset's metadata, whose figures are the SQL answers on the same tables, and which a
real browser draws without errors."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import polars as pl
import pytest

from churn_assets.decisions.sql import ask, register_tables
from churn_assets.ml.forecast import FORECAST_SCHEMA
from churn_assets.reports import svg
from churn_assets.reports.browser import Chromium, check_page, find_chromium
from churn_assets.reports.format import money, percent, points
from churn_assets.reports.inputs import BriefSource, brief_path, read_inputs
from churn_assets.reports.page import render
from churn_assets.reports.server import page_url
from churn_assets.resources import build_resources
from churn_assets.resources.store import DateWindow
from churn_assets.settings import load_settings
from churn_assets_tests.conftest import free_port, wait_until_served
from churn_assets_tests.scored_world import LAST, SCORED_FROM


class Figures(HTMLParser):
    """``data-figure`` elements (name -> (raw value, text shown)) and table rows."""

    def __init__(self):
        super().__init__()
        self.figures, self.rows, self._open, self._row = {}, [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-figure" in attrs:
            self._open = (attrs["data-figure"], attrs["data-value"])
        if tag == "tr":
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._row.append("")

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._open:
            name, raw = self._open
            self.figures[name] = (raw, data)
            self._open = None
        if self._row:
            self._row[-1] += data


def parse(html: str) -> Figures:
    parser = Figures()
    parser.feed(html)
    return parser


def sql_context(paths) -> pl.SQLContext:
    """The tables exactly as ``churn-assets sql`` registers them."""
    store = build_resources("local", paths)["store"]
    names = ("gold_customer_features", "scores_daily", "decisions_actions", "decisions_outcomes")
    return register_tables(pl.SQLContext(), {
        n: pl.read_delta(store.location(n.replace("_", ".", 1))) for n in names})


def test_the_scoring_job_renders_a_page_per_day_linked_from_metadata(scored_world):
    paths, meta = scored_world
    brief = meta["reports/daily_brief"]
    assert brief["pages"] == (LAST - SCORED_FROM).days + 1
    assert brief["latest_day"] == str(LAST)
    page = brief_path(paths.reports, LAST)
    # The UI link is http (a browser will not follow file:// from the UI), at [reports] url.
    assert brief["brief"] == f"http://127.0.0.1:8765/brief/{LAST.isoformat()}.html"
    assert brief["file"] == page.as_uri() and brief["path"] == str(page)
    assert brief["open_with"] == f"churn-assets report --day {LAST} --serve --open"
    for offset in range((LAST - SCORED_FROM).days + 1):
        assert brief_path(paths.reports, SCORED_FROM + timedelta(days=offset)).exists()
    html = page.read_text()
    # Self-contained: nothing to fetch (the only URL is a link to the MLflow UI); the one
    # <link> is the inline empty icon that stops a browser asking for /favicon.ico.
    assert not re.search(r"<(script|img|iframe)\b", html)
    assert re.findall(r"<link\b[^>]*>", html) == ['<link rel="icon" href="data:,">']
    assert "url(" not in html
    assert html.count("<svg") >= 10
    assert page.stat().st_size < 300_000


def test_page_figures_equal_the_sql_answers(scored_world):
    paths, _ = scored_world
    page = parse(brief_path(paths.reports, LAST).read_text())
    ctx = sql_context(paths)
    high = ask(ctx, "high_risk_customers").row(0, named=True)
    assert high["snapshot_date"] == LAST
    figures = page.figures
    assert int(figures["customers_scored"][0]) == high["customers_scored"]
    assert int(figures["high_risk_customers"][0]) == high["high_risk_customers"]

    by_segment = ask(ctx, "revenue_at_risk_by_segment")
    assert float(figures["revenue_at_risk"][0]) == pytest.approx(by_segment["revenue_at_risk"].sum())
    assert figures["revenue_at_risk"][1] == money(by_segment["revenue_at_risk"].sum())
    # The "today by segment" table shows the question's rows, in its order, as money.
    shown = [r for r in page.rows if len(r) == 5 and r[0] in
             set(by_segment["segment"].fill_null("unknown"))]
    assert [r[0] for r in shown] == by_segment["segment"].fill_null("unknown").to_list()
    for row, expected in zip(shown, by_segment.iter_rows(named=True), strict=True):
        assert row[1] == f"{expected['customers']:,}"
        assert row[3] == money(expected["revenue_at_risk"])

    fed = ask(ctx, f"""SELECT CAST(SUM(CASE WHEN control THEN 0 ELSE 1 END) AS BIGINT) AS treated,
        SUM(CASE WHEN control THEN 0.0 ELSE cost END) AS spend,
        SUM(CASE WHEN control THEN 0.0 ELSE expected_value END) AS expected_value
        FROM decisions_actions WHERE snapshot_date = '{LAST}'""").row(0, named=True)
    assert int(figures["customers_treated"][0]) == (fed["treated"] or 0)
    assert float(figures["spend"][0]) == pytest.approx(fed["spend"] or 0.0)
    assert figures["spend"][1] == money(fed["spend"] or 0.0)
    assert float(figures["expected_value"][0]) == pytest.approx(fed["expected_value"] or 0.0)
    known = ask(ctx, f"SELECT COUNT(*) AS n FROM gold_customer_features "
                     f"WHERE snapshot_date = '{LAST}'").item()
    assert int(figures["customers_known"][0]) == known


def test_sections_without_data_say_so(scored_world):
    paths, _ = scored_world
    settings = load_settings(paths)
    resources = build_resources("local", paths, settings)
    inputs = read_inputs(resources["store"], resources["mlflow"].location(), settings, LAST)
    nothing = pl.DataFrame()
    bare = dataclasses.replace(inputs, outcomes=nothing, whales=nothing, models=nothing,
                               importance=nothing, calibration=nothing, drift=nothing,
                               actions=nothing)
    html = render(bare)
    for message in ("No campaign has been measured yet", "No whale", "No model version",
                    "No drift measured", "No actions decided", "No revenue forecast yet"):
        assert message in html
    # A day before anything was scored still renders, saying so.
    empty = dataclasses.replace(bare, scores=inputs.scores.clear(), day=SCORED_FROM - timedelta(days=3))
    html = render(empty)
    assert "No day has been scored yet" in html and "No CLTV" in html


def test_the_revenue_forecast_is_drawn_dashed_after_the_weeks_observed(scored_world):
    paths, _ = scored_world
    settings = load_settings(paths)
    resources = build_resources("local", paths, settings)
    inputs = read_inputs(resources["store"], resources["mlflow"].location(), settings, LAST)
    monday = date(2026, 1, 5)
    weeks = pl.DataFrame([
        {"week_start": monday + timedelta(weeks=i), "segment": "all",
         "kind": "forecast" if i >= 30 else "actual",
         "revenue": None if i >= 30 else 1000.0 + i,
         "forecast": 2000.0 + i if i >= 30 else None, "lower": 1500.0 if i >= 30 else None,
         "upper": 2500.0 if i >= 30 else None, "model": "lightgbm" if i >= 30 else None,
         "origin": monday + timedelta(weeks=30, days=-1) if i >= 30 else None}
        for i in range(42)], schema=FORECAST_SCHEMA)
    html = render(dataclasses.replace(inputs, forecast=weeks))
    section = html.split('<section id="forecast">')[1].split("</section>")[0]
    assert "Weekly revenue and forecast" in section and "stroke-dasharray" in section
    # 26 weeks observed, 12 forecast: marks for the actuals, the forecast (from the last week
    # observed), and both bounds.
    assert f'data-marks="{26 + 13 + 12 + 12}"' in section
    assert "forecast by lightgbm" in section
    today = inputs.today(inputs.scores)["revenue_at_risk"].sum()
    assert f"Revenue at risk today: {money(today)}" in section
    # Only weeks observed (too little history): the actuals, and why there is no forecast.
    html = render(dataclasses.replace(inputs, forecast=weeks.filter(pl.col("kind") == "actual")))
    section = html.split('<section id="forecast">')[1].split("</section>")[0]
    assert 'data-marks="26"' in section and "Not enough whole weeks" in section


def test_churn_assets_report_writes_the_page_and_refuses_an_unscored_day(scored_world, tmp_path,
                                                                       monkeypatch, capsys):
    from churn_assets.cli import main
    from churn_assets_tests.scored_world import copy_world

    paths = copy_world(scored_world[0], tmp_path / "home")
    monkeypatch.setenv("CHURN_HOME", str(paths.home))
    brief_path(paths.reports, LAST).unlink()
    assert main(["report"]) == 0
    assert str(brief_path(paths.reports, LAST)) in capsys.readouterr().out
    assert brief_path(paths.reports, LAST).exists()
    unscored = SCORED_FROM - timedelta(days=1)
    assert main(["report", "--day", str(unscored)]) == 2
    assert "has no scores" in capsys.readouterr().err
    assert not brief_path(paths.reports, unscored).exists()


def test_pages_of_a_multi_day_run_equal_pages_read_for_their_day_alone(scored_world):
    """The scoring job reads what its days' pages share once (``BriefSource`` over the run's
    days); each page must still be the one its day alone gives (trend window, whales,
    outcomes so far, drift of that day)."""
    paths, _ = scored_world
    settings = load_settings(paths)
    resources = build_resources("local", paths, settings)
    location, ui = resources["mlflow"].location(), resources["mlflow"].ui_url
    source = BriefSource(resources["store"], location, settings,
                         DateWindow(SCORED_FROM, LAST + timedelta(days=1)), mlflow_ui=ui)
    for day in (SCORED_FROM, SCORED_FROM + timedelta(days=7), LAST):
        alone = read_inputs(resources["store"], location, settings, day, mlflow_ui=ui)
        assert not alone.drift.is_empty() and not alone.today(alone.scores).is_empty()
        assert not alone.outcomes.is_empty() or day == SCORED_FROM
        assert render(source.inputs(day)) == render(alone), day
    with pytest.raises(ValueError, match="outside"):
        source.inputs(LAST + timedelta(days=1))


def test_formats_and_axes():
    assert money(1234.5) == "€1,234" and money(-20) == "-€20" and money(None) == "–"
    assert percent(0.1234) == "12.3%" and points(-0.025) == "-2.5 pp"
    for low, high in ((0, 500), (0.0, 0.168), (0.5, 1.0), (-0.4, 1.0), (3, 3)):
        ticks = svg.nice_ticks(low, high)
        assert ticks[0] <= low and ticks[-1] >= high and len(ticks) >= 2


@pytest.mark.skipif(find_chromium() is None and not os.environ.get("CI"),
                    reason="no Chromium here (CI installs Debian's chromium)")
def test_a_real_browser_draws_every_chart_without_errors(scored_world):
    paths, _ = scored_world
    page = brief_path(paths.reports, LAST)
    report = check_page(page)
    assert report.console_errors == []
    assert report.requests == [Path(page).resolve().as_uri()]  # nothing fetched
    assert len(report.charts) >= 10
    for chart in report.charts:
        assert chart["marks"] > 0 and chart["marks"] == chart["declared"], chart
        assert chart["width"] > 300 and chart["height"] > 50, chart
    shown = {s["id"] for s in report.sections}
    assert {"customers", "risk", "drivers", "actions", "whales", "campaigns", "model",
            "cltv"} <= shown
    assert report.figures["revenue_at_risk"] == parse(page.read_text()).figures[
        "revenue_at_risk"][1]


def test_report_serve_answers_the_link_the_ui_shows(scored_world, tmp_path):
    """`churn-assets report --serve` as a user starts it: its own process, the metadata's link
    (with [reports] url pointed at its port) returns the page, nothing else is listed or
    escapes the folder, and a real browser draws the page it serves."""
    from churn_assets_tests.scored_world import copy_world

    paths = copy_world(scored_world[0], tmp_path / "home")
    port = free_port()
    with (paths.home / "settings.toml").open("a") as settings:
        settings.write(f'\n[reports]\nurl = "http://127.0.0.1:{port}"\n')
    env = {**os.environ, "CHURN_HOME": str(paths.home)}
    server = subprocess.Popen([sys.executable, "-m", "churn_assets.cli", "report", "--serve"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/brief/{LAST.isoformat()}.html"
        assert url == page_url(load_settings(paths).reports.url, paths.reports,
                               brief_path(paths.reports, LAST))
        wait_until_served(url, server, "the reports server")
        assert httpx.get(url).content == brief_path(paths.reports, LAST).read_bytes()
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/").status_code == 404  # no listing
        assert httpx.get(f"{base}/brief/").status_code == 404
        # Raw paths: httpx would normalize the dot segments away before sending them.
        for escape in ("/../settings.toml", "/%2e%2e/settings.toml"):
            sent = httpx.Request("GET", base, extensions={"target": escape.encode()})
            assert httpx.Client().send(sent).status_code == 404
        if find_chromium() is not None or os.environ.get("CI"):
            with Chromium() as browser:
                report = browser.load(url)
                browser.listen(2.0)
                later = browser.requested()
            assert report.console_errors == [] and report.requests == [url] and later == [url]
            assert len(report.charts) >= 10
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert f"serving {paths.reports} at {url}" in out
    assert "Traceback" not in err
