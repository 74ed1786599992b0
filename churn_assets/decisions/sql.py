"""Business questions as SQL over the pipeline's tables, run by ``polars.SQLContext``.

Tables (register them with ``register_tables``):

- ``gold_customer_features``: gold features (``transforms.gold.FEATURE_SCHEMA``);
- ``scores_daily``: one row per customer and ``snapshot_date`` with ``churn_probability``,
  ``risk_band``, ``cltv``, ``revenue_at_risk``, ``driver_1..3``, ``model_version``, ``segment``;
- ``decisions_actions``: the CRM feed (``feed.FEED_SCHEMA``: customer_id, snapshot_date,
  campaign_id, action, cost, expected_value, control, reason);
- ``decisions_outcomes``: the feed with outcomes (``uplift.MEASURED_SCHEMA``: the feed's columns
  plus ``retained`` and ``revenue`` in the outcome window) and the experiment's ``assignment``
  (``policy`` or ``explore``; null in tables written before it existed);
- ``ml_revenue_forecast``: revenue per week and segment (``'all'`` overall): whole weeks observed
  (``kind = 'actual'``, ``revenue``) and the weeks ahead (``kind = 'forecast'``: ``forecast``,
  ``lower``, ``upper``, ``model``, ``origin``); written by the weekly ``revenue_forecast`` job.

"Today" is the latest ``snapshot_date`` in ``scores_daily``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import polars as pl

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TABLES = ("gold_customer_features", "scores_daily", "decisions_actions", "decisions_outcomes",
          "ml_revenue_forecast")

_LATEST = "(SELECT MAX(snapshot_date) FROM scores_daily)"

QUESTIONS: dict[str, str] = {
    # How many customers are at high risk today, out of how many scored?
    "high_risk_customers": f"""
        SELECT snapshot_date,
               CAST(SUM(CASE WHEN risk_band = 'high' THEN 1 ELSE 0 END) AS BIGINT)
                   AS high_risk_customers,
               COUNT(*) AS customers_scored
        FROM scores_daily
        WHERE snapshot_date = {_LATEST}
        GROUP BY snapshot_date
    """,
    # Where is today's revenue at risk? Per segment, largest first.
    "revenue_at_risk_by_segment": f"""
        SELECT segment,
               COUNT(*) AS customers,
               CAST(SUM(CASE WHEN risk_band = 'high' THEN 1 ELSE 0 END) AS BIGINT)
                   AS high_risk_customers,
               SUM(revenue_at_risk) AS revenue_at_risk,
               SUM(cltv) AS cltv
        FROM scores_daily
        WHERE snapshot_date = {_LATEST}
        GROUP BY segment
        ORDER BY revenue_at_risk DESC, segment
    """,
    # Whom to prioritize today: the 20 customers with the most revenue at risk, with the action
    # the policy chose for them (null: none today) and whether they are in the control group.
    "prioritize_today": f"""
        SELECT s.customer_id, s.segment, s.risk_band, s.churn_probability, s.cltv,
               s.revenue_at_risk, s.driver_1, a.action, a.control, a.reason
        FROM scores_daily AS s
        LEFT JOIN decisions_actions AS a
          ON a.customer_id = s.customer_id AND a.snapshot_date = s.snapshot_date
        WHERE s.snapshot_date = {_LATEST}
        ORDER BY s.revenue_at_risk DESC, s.customer_id
        LIMIT 20
    """,
    # How did each campaign do? Retention and revenue per customer, treated against control,
    # the retention uplift, the spend and the cost per saved customer (null unless uplift > 0).
    "campaign_performance": """
        WITH arms AS (
            SELECT campaign_id, action, snapshot_date,
                   CAST(SUM(CASE WHEN control THEN 0 ELSE 1 END) AS BIGINT) AS treated_n,
                   CAST(SUM(CASE WHEN control THEN 1 ELSE 0 END) AS BIGINT) AS control_n,
                   AVG(CASE WHEN control THEN NULL ELSE CAST(retained AS DOUBLE) END)
                       AS treated_retention,
                   AVG(CASE WHEN control THEN CAST(retained AS DOUBLE) ELSE NULL END)
                       AS control_retention,
                   AVG(CASE WHEN control THEN NULL ELSE revenue END)
                       AS treated_revenue_per_customer,
                   AVG(CASE WHEN control THEN revenue ELSE NULL END)
                       AS control_revenue_per_customer,
                   SUM(CASE WHEN control THEN 0.0 ELSE cost END) AS spend
            FROM decisions_outcomes
            -- The policy's own treated vs control; exploration arms are another population.
            WHERE COALESCE(assignment, 'policy') = 'policy'
            GROUP BY campaign_id, action, snapshot_date
        )
        SELECT campaign_id, action, snapshot_date, treated_n, control_n,
               treated_retention, control_retention,
               treated_retention - control_retention AS uplift,
               treated_revenue_per_customer, control_revenue_per_customer,
               spend,
               CASE WHEN treated_retention - control_retention > 0
                    THEN spend / ((treated_retention - control_retention) * treated_n)
               END AS cost_per_saved_customer
        FROM arms
        ORDER BY snapshot_date, campaign_id
    """,
    # Why are customers at risk? Today's average behaviour per risk band, from gold features.
    "risk_band_profile": f"""
        SELECT s.risk_band,
               COUNT(*) AS customers,
               AVG(f.days_since_last_order) AS avg_days_since_last_order,
               AVG(f.sessions_30d) AS avg_sessions_30d,
               AVG(f.tickets_30d) AS avg_tickets_30d,
               AVG(f.failed_payments_90d) AS avg_failed_payments_90d
        FROM scores_daily AS s
        JOIN gold_customer_features AS f
          ON f.customer_id = s.customer_id AND f.snapshot_date = s.snapshot_date
        WHERE s.snapshot_date = {_LATEST}
        GROUP BY s.risk_band
        ORDER BY s.risk_band
    """,
    # What revenue do we expect in the coming weeks, per segment and overall, against the last
    # whole week and today's revenue at risk? (No forecast rows: too little history yet.)
    "revenue_forecast": f"""
        WITH weeks AS (
            SELECT segment,
                   MAX(CASE WHEN kind = 'actual' THEN week_start END) AS last_actual_week,
                   MAX(CASE WHEN kind = 'forecast' THEN model END) AS model,
                   CAST(SUM(CASE WHEN kind = 'forecast' THEN 1 ELSE 0 END) AS BIGINT)
                       AS weeks_ahead,
                   SUM(CASE WHEN kind = 'forecast' THEN forecast END) AS forecast_revenue,
                   SUM(CASE WHEN kind = 'forecast' THEN lower END) AS sum_of_weekly_lower,
                   SUM(CASE WHEN kind = 'forecast' THEN upper END) AS sum_of_weekly_upper
            FROM ml_revenue_forecast
            GROUP BY segment
        ),
        risk AS (
            SELECT segment, SUM(revenue_at_risk) AS revenue_at_risk
            FROM scores_daily WHERE snapshot_date = {_LATEST} GROUP BY segment
            UNION ALL
            SELECT 'all' AS segment, SUM(revenue_at_risk) AS revenue_at_risk
            FROM scores_daily WHERE snapshot_date = {_LATEST}
        )
        SELECT w.segment, w.model, w.last_actual_week, f.revenue AS last_week_revenue,
               w.weeks_ahead, w.forecast_revenue, w.sum_of_weekly_lower,
               w.sum_of_weekly_upper, r.revenue_at_risk
        FROM weeks AS w
        LEFT JOIN ml_revenue_forecast AS f
          ON f.segment = w.segment AND f.week_start = w.last_actual_week AND f.kind = 'actual'
        LEFT JOIN risk AS r ON r.segment = w.segment
        ORDER BY w.segment
    """,
}


def register_tables(ctx: pl.SQLContext,
                    tables: Mapping[str, pl.LazyFrame | pl.DataFrame]) -> pl.SQLContext:
    """Register ``tables`` (name -> frame; eager frames are made lazy) in ``ctx``; returns it.

    The questions read the ``TABLES`` names; other tables may be registered for ad-hoc SQL.
    """
    if bad := sorted(name for name in tables if not _IDENTIFIER.fullmatch(name)):
        raise ValueError(f"table names {bad} are not SQL identifiers (letters, digits, _)")
    for name, frame in tables.items():
        frame = frame.lazy()
        if name in ("decisions_actions", "decisions_outcomes") and (
                "assignment" not in frame.collect_schema().names()):
            # Written before the experiment columns: every row was the policy's.
            frame = frame.with_columns(assignment=pl.lit(None, dtype=pl.String))
        ctx.register(name, frame)
    return ctx


class SqlError(ValueError):
    """A question that cannot be answered, in one line a person can act on."""


# Polars SQL can read any file through table functions (read_csv('/etc/…'), read_parquet of
# bronze's raw PII); questions may read only the registered tables.
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRINGS = re.compile(r"'(?:[^']|'')*'")
_FILE_FUNCTION = re.compile(r"""(?i)(^|[^a-z0-9_$])["`\[]?(read|scan)_[a-z0-9_]*["`\]]?\s*\(""")
# A registered table is a Delta (Parquet) scan or an in-memory frame; these scan other files.
_FOREIGN_SCAN = re.compile(r"(?i)\b(csv|ndjson|json|ipc)\s+scan\b")


def ask(ctx: pl.SQLContext, question: str) -> pl.DataFrame:
    """Run one of ``QUESTIONS`` by name (or any SQL text) and collect the answer.

    Only the registered tables can be read: a query naming a file-reading function is refused,
    and so is a plan that scans anything but them. Errors are ``SqlError`` with one line.
    """
    query = QUESTIONS.get(question, question)
    code = _STRINGS.sub("''", _COMMENTS.sub(" ", query))
    if _FILE_FUNCTION.search(code):
        raise SqlError("only the project's tables can be queried (see --tables); functions that "
                       "read files, such as read_csv or read_parquet, are disabled")
    try:
        plan = ctx.execute(query, eager=False)
        if _FOREIGN_SCAN.search(plan.explain(optimized=False)):
            raise SqlError("only the project's tables can be queried (see --tables)")
        return plan.collect()
    except SqlError:
        raise
    except (pl.exceptions.PolarsError, OSError) as error:
        raise SqlError(_one_line(error, ctx)) from error


def _one_line(error: Exception, ctx: pl.SQLContext) -> str:
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    missing = re.search(r"relation '([^']+)' was not found", first)
    if missing:
        name = missing.group(1)
        if name == "ml_revenue_forecast":
            return (f"table {name} has not been materialized yet: the weekly revenue_forecast "
                    "job writes it (launch it from the UI to run it now)")
        if name in TABLES:
            return (f"table {name} has not been materialized yet: `churn-assets run` writes it "
                    "(scores and decisions once a champion model exists)")
        return f"no table {name!r}; the tables are: {', '.join(sorted(ctx.tables()))}"
    text = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return text if len(text) <= 300 else text[:299] + "…"
