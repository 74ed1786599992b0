"""The daily brief as one self-contained HTML page: inline CSS, inline SVG charts, no script
and nothing fetched, so it opens from a file, an e-mail attachment or behind a proxy.

Headline numbers carry ``data-figure`` (a name) and ``data-value`` (the unrounded value), so a
test can hold what the page shows against ``churn-assets sql`` answers on the same tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from html import escape

import polars as pl

from churn_assets.reports import brief as b
from churn_assets.reports import svg
from churn_assets.reports.format import count, money, number, percent, points, short_money

STYLE = """
:root{--ink:#1f2933;--muted:#5f6b7a;--line:#e3e8ee;--card:#fff;--bg:#f5f7fa;--accent:#2f6fad}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:var(--bg)}
header{background:#17324d;color:#fff;padding:20px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d6e3}main{max-width:1320px;margin:0 auto;padding:20px 24px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(132px,1fr));gap:12px;
margin-bottom:18px}.kpi{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:12px 14px}.kpi b{display:block;font-size:22px;font-weight:650}.kpi span{color:var(--muted);
font-size:12px;text-transform:uppercase;letter-spacing:.04em}.kpi small{color:var(--muted)}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 18px;
margin-bottom:18px}section h2{margin:0 0 10px;font-size:17px}.grid{display:grid;
grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:14px}figure{margin:0}
figcaption{font-weight:600;margin-bottom:4px}.chart-svg{width:100%;height:auto;display:block}.chart-svg.square{max-width:400px}
.chart-svg .grid{stroke:#edf0f3}.chart-svg .tick{font-size:11px;fill:#6b7785}
.chart-svg .label{font-size:11.5px;fill:#33404d}.chart-svg .value{font-size:11px;fill:#33404d}
.legend{display:flex;flex-wrap:wrap;gap:12px;font-size:12px;color:var(--muted);margin-top:4px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
.note,.empty{color:var(--muted);font-size:12.5px;margin:6px 0 0}.empty{font-style:italic;
padding:8px 0}table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;
padding:5px 8px;border-bottom:1px solid var(--line)}th{color:var(--muted);font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.up{color:#c8443f}.down{color:#3a9a5b}
footer{color:var(--muted);font-size:12px;text-align:center;padding:8px 0 28px}a{color:var(--accent)}
"""


class Page:
    """Collects the headline figures while the sections are drawn."""

    def __init__(self, inputs: b.BriefInputs):
        self.inputs = inputs
        self.money = partial(money, currency=inputs.currency)
        self.short_money = partial(short_money, currency=inputs.currency)
        self.figures: dict[str, float | int | None] = {}

    def kpi(self, name: str, label: str, value, shown: str, detail: str = "") -> str:
        self.figures[name] = value
        raw = "" if value is None else repr(float(value)) if isinstance(value, float) else str(value)
        extra = f"<small>{escape(detail)}</small>" if detail else ""
        return (f'<div class="kpi"><span>{escape(label)}</span><b data-figure="{name}" '
                f'data-value="{raw}">{escape(shown)}</b>{extra}</div>')


def render(inputs: b.BriefInputs, generated_at: datetime | None = None) -> str:
    page = Page(inputs)
    sections = [_headline(page), _customers(page), _risk(page), _drivers(page),
                _actions(page), _whales(page), _campaigns(page), _model_health(page),
                _cltv(page), _revenue_forecast(page)]
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    version = _champion(inputs)
    links = " · ".join(f'<a href="{escape(url)}">{escape(name)}</a>'
                       for name, url in inputs.links.items())
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        # An inline empty icon: served over HTTP, the browser would otherwise fetch
        # /favicon.ico after the page loaded, a 404 in the server's log.
        "<link rel=\"icon\" href=\"data:,\">"
        f"<title>Retention brief {inputs.day}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>Retention brief · {inputs.day:%A %d %B %Y}</h1>"
        f"<p>Scores of {inputs.day} by churn_model {escape(version)} · generated {generated}"
        f"{' · ' + links if links else ''}</p></header><main>{''.join(sections)}</main>"
        "<footer>churn-assets · every figure here is also answerable with "
        "<code>churn-assets sql</code></footer></body></html>"
    )


def figures(inputs: b.BriefInputs) -> dict[str, float | int | None]:
    """The headline figures of the page, by name (what ``data-figure`` marks)."""
    page = Page(inputs)
    _headline(page)
    return page.figures


def _champion(inputs: b.BriefInputs) -> str:
    today = inputs.today(inputs.scores)
    if not today.is_empty():
        return "v" + ", v".join(sorted(set(today["model_version"].drop_nulls().to_list())))
    return "(none)"


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def _empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def _table(frame: pl.DataFrame, columns: Sequence[tuple[str, str, Callable | None]]) -> str:
    """``columns``: (column, header, formatter or None for text)."""
    head = "".join(f'<th class="{"n" if f else ""}">{escape(h)}</th>' for _, h, f in columns)
    rows = []
    for row in frame.iter_rows(named=True):
        cells = "".join(
            f'<td class="n">{escape(f(row[c]))}</td>' if f else
            f'<td>{escape("" if row[c] is None else str(row[c]))}</td>'
            for c, _, f in columns)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _days(frame: pl.DataFrame) -> list[str]:
    return [f"{d:%d %b}" for d in frame[b.SNAPSHOT]]


def _headline(page: Page) -> str:
    inputs = page.inputs
    today = inputs.today(inputs.scores)
    known = inputs.customers.filter(pl.col(b.SNAPSHOT) == inputs.day)["customers"]
    scored = today.height
    high = int((today["risk_band"] == "high").sum()) if scored else 0
    at_risk = float(today["revenue_at_risk"].sum()) if scored else 0.0
    feed = inputs.today(inputs.actions)
    treated = feed.filter(~pl.col("control")) if feed.height else feed
    spend = float(treated["cost"].sum()) if feed.height else 0.0
    value = float(treated["expected_value"].sum()) if feed.height else 0.0
    whales = inputs.today(inputs.whales).height
    return '<div class="kpis">' + "".join([
        page.kpi("customers_known", "Customers", int(known[0]) if known.len() else None,
                 count(known[0]) if known.len() else "–", "known on this day"),
        page.kpi("customers_scored", "Scored", scored, count(scored),
                 "at-risk population"),
        page.kpi("high_risk_customers", "High risk", high, count(high),
                 f"{percent(high / scored) if scored else '–'} of scored"),
        page.kpi("revenue_at_risk", "Revenue at risk", at_risk, page.money(at_risk),
                 "probability × CLTV"),
        page.kpi("customers_treated", "Actions today", treated.height, count(treated.height),
                 f"+ {count(feed.height - treated.height)} control"),
        page.kpi("spend", "Spend", spend, page.money(spend),
                 f"of {page.money(inputs.daily_budget)} budget"),
        page.kpi("expected_value", "Expected value", value, page.money(value),
                 "saved revenue, treated"),
        page.kpi("whales", "Whales", whales, count(whales), "VIP call list"),
    ]) + "</div>"


def _customers(page: Page) -> str:
    inputs = page.inputs
    if inputs.scores.is_empty():
        return _section("Customers and churn rate", _empty("No day has been scored yet."),
                        "customers")
    trend = b.trend(inputs)
    days = _days(trend)
    counts = svg.line_chart("Customers", days, [
        svg.Series("known", trend["customers"].to_list()),
        svg.Series("scored (at risk)", trend["customers_scored"].to_list()),
        svg.Series("high risk", trend["high_risk_customers"].to_list(), svg.BAND_COLORS["high"]),
    ], count)
    scored = trend.filter(pl.col("customers_scored").is_not_null())
    observed = scored["observed_churn_rate"]
    rates = svg.line_chart("Churn rate of the scored customers", _days(scored), [
        svg.Series("predicted (mean probability)", scored["predicted_churn_rate"].to_list()),
        svg.Series("observed (label window closed)", observed.to_list(), dashed=True),
    ], partial(percent, decimals=0), note="" if observed.drop_nulls().len() else
        "No observed rate yet: a day's churn is known once its label horizon has passed.")
    return _section("Customers and churn rate", f'<div class="grid">{counts}{rates}</div>',
                    "customers")


def _risk(page: Page) -> str:
    inputs = page.inputs
    if inputs.scores.is_empty():
        return _section("Risk", _empty("No day has been scored yet."), "risk")
    mix = b.band_mix(inputs.scores)
    bands = svg.stacked_bars("Risk band mix", _days(mix), [
        svg.Series(band, mix[band].to_list(), svg.BAND_COLORS[band]) for band in b.BANDS], count)
    by_segment = b.revenue_at_risk_by_segment(inputs.scores)
    days = sorted(set(by_segment[b.SNAPSHOT]))
    wide = by_segment.pivot(on="segment", index=b.SNAPSHOT, values="revenue_at_risk").sort(
        b.SNAPSHOT)
    segments = sorted(c for c in wide.columns if c != b.SNAPSHOT)
    revenue = svg.line_chart("Revenue at risk by segment", [f"{d:%d %b}" for d in days],
                             [svg.Series(s, wide[s].to_list()) for s in segments],
                             page.short_money)
    today = b.segments_today(inputs)
    table = _table(today.with_columns(pl.col("segment").fill_null("unknown")), [
        ("segment", "segment", None), ("customers", "scored", count),
        ("high_risk_customers", "high risk", count),
        ("revenue_at_risk", "revenue at risk", page.money), ("cltv", "CLTV", page.money)])
    return _section("Risk", f'<div class="grid">{bands}{revenue}</div>'
                    f"<h3>Today by segment</h3>{table}", "risk")


def _drivers(page: Page) -> str:
    inputs = page.inputs
    parts = []
    if inputs.importance.is_empty():
        parts.append(_empty("No champion model's importance is available (MLflow run "
                            "artifacts tables/importance.json)."))
    else:
        top = inputs.importance.head(12)
        parts.append(svg.hbars("Global drivers: mean |SHAP| of the champion (validation)",
                               top["feature"].to_list(), top["mean_abs_shap"].to_list(),
                               partial(number, decimals=3)))
    movement = b.driver_movement(inputs)
    if movement.is_empty():
        parts.append(_empty("No scores yet: nobody has a top driver."))
    else:
        since = movement["compared_with"][0]
        rows = movement.head(10).with_columns(
            trend=pl.when(pl.col("change") > 0.005).then(pl.lit("▲"))
            .when(pl.col("change") < -0.005).then(pl.lit("▼")).otherwise(pl.lit("·")))
        parts.append(f"<div><h3>Top driver of each customer: today vs {since}</h3>" + _table(
            rows, [("driver", "top driver", None), ("share_today", "share today", percent),
                   ("share_before", f"share {since:%d %b}", percent),
                   ("change", "change", points), ("trend", "", None)]) + "</div>")
    return _section("Top drivers", f'<div class="grid">{"".join(parts)}</div>', "drivers")


def _actions(page: Page) -> str:
    inputs = page.inputs
    per_action = b.actions_today(inputs)
    if per_action.is_empty():
        return _section("Today's actions", _empty(
            "No actions decided for this day yet (decisions/actions), or nobody was selected."),
            "actions")
    spend = float(per_action["cost"].sum())
    budget_chart = svg.hbars(
        "Spend by action vs the daily budget", per_action["action"].to_list(),
        per_action["cost"].to_list(), page.money,
        references=[svg.Reference(inputs.daily_budget, f"budget {page.money(inputs.daily_budget)}",
                                  "#c8443f")],
        note=f"Treated spend {page.money(spend)} of {page.money(inputs.daily_budget)} "
             f"({percent(spend / inputs.daily_budget) if inputs.daily_budget else '–'}).")
    table = _table(per_action, [("action", "action", None), ("treated", "treated", count),
                                ("control", "control", count), ("cost", "cost", page.money),
                                ("expected_value", "expected value", page.money)])
    feed = inputs.today(inputs.actions).filter(~pl.col("control")).sort(
        ["expected_value", "customer_id"], descending=[True, False]).head(10)
    who = _table(feed, [("customer_id", "customer", None), ("action", "action", None),
                        ("cost", "cost", page.money),
                        ("expected_value", "expected value", page.money),
                        ("reason", "why", None)])
    return _section("Today's actions", f'<div class="grid">{budget_chart}<div>{table}</div></div>'
                    f"<h3>Most valuable actions today</h3>{who}", "actions")


def _whales(page: Page) -> str:
    whales = page.inputs.today(page.inputs.whales)
    if whales.is_empty():
        return _section("Whales", _empty("No whale (top-CLTV customer at high or rising risk) "
                                         "on this day."), "whales")
    table = _table(whales.head(15), [
        ("customer_id", "customer", None), ("segment", "segment", None),
        ("cltv", "CLTV", page.money), ("churn_probability", "churn probability", percent),
        ("probability_change", "change", points),
        ("revenue_at_risk", "revenue at risk", page.money), ("reason", "why", None)])
    more = f'<p class="note">{whales.height - 15} more in decisions/whales.</p>' \
        if whales.height > 15 else ""
    return _section("Whales", table + more, "whales")


def _campaigns(page: Page) -> str:
    inputs = page.inputs
    results = b.campaign_results(inputs.outcomes)
    if results.is_empty():
        return _section("Campaign results", _empty(
            "No campaign has been measured yet: outcomes exist once a campaign day's outcome "
            "window ([scoring] outcome_window_days) has passed."), "campaigns")
    days = sorted(set(results[b.SNAPSHOT]))
    labels = [f"{d:%d %b}" for d in days]
    series = []
    for action in sorted(set(results["action"])):
        rows = {r[b.SNAPSHOT]: r for r in results.filter(pl.col("action") == action)
                .iter_rows(named=True)}
        pick = [rows.get(d) for d in days]
        series.append(svg.Intervals(action, [r and r["uplift"] for r in pick],
                                    [r and r["uplift_low"] for r in pick],
                                    [r and r["uplift_high"] for r in pick]))
    uplift_chart = svg.intervals("Retention uplift per action (95% interval)", labels, series,
                                 partial(points, decimals=0))
    cumulative = b.cumulative_value(results)
    value_chart = svg.line_chart("Cumulative saved revenue vs spend", _days(cumulative), [
        svg.Series("saved revenue", cumulative["cumulative_saved_revenue"].to_list(), "#3a9a5b"),
        svg.Series("spend", cumulative["cumulative_spend"].to_list(), "#c8443f"),
    ], page.short_money, note="Saved revenue: (treated - control) revenue per customer × "
        "treated customers, over each campaign's outcome window; the policy's arms "
        "(exploration rows are measured separately).")
    return _section("Campaign results", f'<div class="grid">{uplift_chart}{value_chart}</div>',
                    "campaigns")


def _model_health(page: Page) -> str:
    inputs = page.inputs
    parts = []
    if inputs.models.is_empty():
        parts.append(_empty("No model version is registered yet."))
    else:
        models = inputs.models.sort(pl.col("version").cast(pl.Int64))
        colors = ["#3a9a5b" if c else "#9aa7b4" for c in models["champion"]]
        parts.append(svg.columns("Validation ROC-AUC per model version (green: champion)",
                                 [f"v{v}" for v in models["version"]],
                                 models["roc_auc"].to_list(), partial(number, decimals=2),
                                 references=[svg.Reference(inputs.auc_floor,
                                                           f"gate floor {inputs.auc_floor:g}",
                                                           "#c8443f")],
                                 colors=colors, zero=False, y_range=(0.5, 1.0)))
    if inputs.calibration.is_empty():
        parts.append(_empty("No calibration table for the champion (MLflow run artifacts "
                            "tables/calibration_model.json)."))
    else:
        parts.append(svg.xy_chart("Calibration of the champion (validation)", [(
            "model", inputs.calibration["mean_predicted"].to_list(),
            inputs.calibration["observed_rate"].to_list())], "predicted", "observed",
            partial(percent, decimals=0)))
    if inputs.drift.is_empty():
        parts.append(_empty("No drift measured: there is no training reference yet."))
    else:
        drift = inputs.drift.sort("psi", descending=True).head(15)
        colors = [{"error": "#c8443f", "warn": "#e0a030"}.get(s, "#2f6fad")
                  for s in drift["status"]]
        parts.append(svg.hbars(
            "Drift: population stability index per feature", drift["feature"].to_list(),
            drift["psi"].to_list(), partial(number, decimals=3),
            references=[svg.Reference(inputs.drift_warn, f"warn {inputs.drift_warn:g}", "#e0a030"),
                        svg.Reference(inputs.drift_error, f"error {inputs.drift_error:g}",
                                      "#c8443f")],
            colors=colors, note=f"{inputs.drift.height} columns compared with the champion's "
            f"validation rows; {int((inputs.drift['status'] != 'ok').sum())} beyond a threshold."))
    return _section("Model health", f'<div class="grid">{"".join(parts)}</div>', "model")


def _cltv(page: Page) -> str:
    histogram = b.cltv_histogram(page.inputs)
    if histogram.is_empty():
        return _section("CLTV distribution", _empty("No CLTV on this day yet."), "cltv")
    labels = [page.short_money(v) for v in histogram["low"]]
    today = page.inputs.today(page.inputs.scores)["cltv"]
    note = (f"Median {page.money(today.median())}, mean {page.money(today.mean())}, "
            f"total {page.money(today.sum())}.")
    chart = svg.columns("Customers by CLTV (scored today; last bin holds the top 1%)", labels,
                        histogram["customers"].to_list(), count, note=note)
    return _section("CLTV distribution", f'<div class="grid">{chart}</div>', "cltv")


def _revenue_forecast(page: Page) -> str:
    title = "Weekly revenue and forecast"
    weeks = b.revenue_weeks(page.inputs)
    if weeks.is_empty():
        return _section(title, _empty(
            "No revenue forecast yet: the weekly revenue_forecast job writes it."), "forecast")
    labels = [f"{d:%d %b}" for d in weeks["week_start"]]
    observed = weeks.filter(pl.col("kind") == "actual")["week_start"]
    last_actual = observed.max() if observed.len() else None
    ahead = weeks.filter(pl.col("kind") == "forecast")
    at_risk = page.inputs.today(page.inputs.scores)
    at_risk = at_risk["revenue_at_risk"].sum() if "revenue_at_risk" in at_risk.columns else None
    risk_note = (f" Revenue at risk today: {page.money(at_risk)}."
                 if at_risk is not None and not page.inputs.scores.is_empty() else "")
    if ahead.is_empty():
        note = "Not enough whole weeks yet to forecast (the asset's metadata says how many)."
    else:
        note = (f"Next {ahead.height} weeks: {page.money(ahead['forecast'].sum())} forecast by "
                f"{ahead['model'][0]} (dashed; thin dashes: the interval).")
    chart = svg.line_chart(title + " (all segments)", labels, [
        svg.Series("actual", weeks["revenue"].to_list()),
        # The dashed line leaves from the last week observed, so the two read as one.
        svg.Series("forecast", [
            row["revenue"] if row["week_start"] == last_actual and ahead.height
            else row["forecast"]
            for row in weeks.iter_rows(named=True)], dashed=True),
        svg.Series("lower", weeks["lower"].to_list(), "#9aa5b1", dashed=True),
        svg.Series("upper", weeks["upper"].to_list(), "#9aa5b1", dashed=True),
    ], page.short_money, note=note + risk_note)
    return _section(title, f'<div class="grid">{chart}</div>', "forecast")
