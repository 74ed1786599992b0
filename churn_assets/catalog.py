"""The catalogue of tables: every table the graph writes, named once.

Each ``Table`` says what a table *is* -- its layer and name (so its store name
``"<layer>.<name>"`` and its asset key ``<layer>/<name>``), the column it is partitioned by, what a
row means, who owns it, which business domain it belongs to, whether it holds personal data, and
the kinds the UI shows for it in each environment. How a table is *computed* (its dependencies,
partitions, checks, automation) stays with the asset that writes it.

Assets, automation, the CLI, the SQL questions and the lab take keys and names from here, so no
asset module imports another to learn a key. ``label`` applies the catalogue to the asset
definitions in one place (``definitions.py``): group, description, owners, tags and kinds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg

from churn_assets.ingest.bronze import PARTITION_COLUMN as DROP_DATE
from churn_assets.ingest.columns import COLUMNS, PII_COLUMNS
from churn_assets.ingest.landing import DOMAIN_FORMATS
from churn_assets.settings import DOMAINS, Settings
from churn_assets.transforms.contracts import PARTITION_COLUMN as ARRIVAL_DATE

SNAPSHOT_DATE = "snapshot_date"

# What the UI's kind badges say about where a table lives, per environment (CHURN_ENV).
ENGINE_KINDS: dict[str, tuple[str, ...]] = {
    "local": ("polars", "delta"),
    "spark": ("spark", "parquet"),
    "databricks": ("databricks", "delta"),
}

# Owners by layer: who answers when a table of that layer is late or wrong.
DATA_PLATFORM, DATA_SCIENCE, RETENTION = "team:data-platform", "team:data-science", "team:retention"


@dataclass(frozen=True)
class Table:
    layer: str
    name: str
    partition_column: str | None
    description: str
    domain: str
    owner: str
    pii: bool = False
    # Kinds that do not depend on the environment (the drop format, the model library).
    kinds_always: tuple[str, ...] = ()
    # Whether the table lives in the table store (so shows the environment's engine kinds).
    stored: bool = True
    # A freshness promise: the day's partition is due this many hours after [freshness]
    # due_hours (None: no promise).
    due_after_hours: int | None = None

    @property
    def full_name(self) -> str:
        """The store's name for the table: ``"gold.customer_features"``."""
        return f"{self.layer}.{self.name}"

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey([self.layer, self.name])

    @property
    def sql_name(self) -> str:
        """The table's name in SQL (``churn-assets sql``): ``gold_customer_features``."""
        return f"{self.layer}_{self.name}"

    def kinds(self, env: str) -> set[str]:
        if env not in ENGINE_KINDS:
            raise ValueError(f"no kinds for environment {env!r}; known: {', '.join(ENGINE_KINDS)}")
        return set(self.kinds_always) | (set(ENGINE_KINDS[env]) if self.stored else set())

    @property
    def tags(self) -> dict[str, str]:
        return {"layer": self.layer, "domain": self.domain, "pii": "yes" if self.pii else "no"}


# ── bronze and silver: one table (and one side table) per domain ─────────────────────────────────

# Domains whose delivered rows carry names, e-mail addresses or phone numbers.
_CONTACT_DOMAINS = frozenset(d for d, columns in COLUMNS.items() if set(columns) & set(PII_COLUMNS))


def bronze(domain: str) -> Table:
    fmt = DOMAIN_FORMATS[domain]
    return Table(
        "bronze", domain, DROP_DATE,
        f"Raw {domain} records exactly as delivered ({fmt} drops), every column as text, plus "
        "_source_file, _row_number, _batch_id, _ingested_at. Partitioned by the day the drop "
        "arrived (_drop_date).",
        domain, DATA_PLATFORM, pii=domain in _CONTACT_DOMAINS, kinds_always=(fmt,),
    )


def bronze_quarantine(domain: str) -> Table:
    return Table(
        "bronze", f"{domain}_quarantine", DROP_DATE,
        f"{domain} records that could not be parsed: file, line, reason, raw text.",
        domain, DATA_PLATFORM, pii=domain in _CONTACT_DOMAINS,
    )


def silver(domain: str) -> Table:
    # Silver keeps e-mail and phone only as keyed hashes: still personal data (pseudonymous).
    return Table(
        "silver", domain, ARRIVAL_DATE,
        f"{domain}: typed to the contract (transforms/contracts.py), UTC, one row per natural key "
        "from the day it first arrived, email/phone as keyed hashes, names dropped. Partitioned "
        "by arrival_date.",
        domain, DATA_PLATFORM, pii=domain in _CONTACT_DOMAINS, due_after_hours=0,
    )


def silver_exceptions(domain: str) -> Table:
    return Table(
        "silver", f"{domain}_exceptions", ARRIVAL_DATE,
        f"{domain} bronze rows that are not silver rows: rejected (with the reason) or "
        "duplicates (of what), with their file and line.",
        domain, DATA_PLATFORM, pii=domain in _CONTACT_DOMAINS,
    )


# ── gold ─────────────────────────────────────────────────────────────────────────────────────────

DAILY_ACTIVITY = Table(
    "gold", "daily_activity", ARRIVAL_DATE,
    "Silver rows summed per customer, event day and arrival day (orders, revenue, sessions, "
    "offers, failed payments, refunds, last ticket): the additive building block of every "
    "windowed feature. By arrival_date.",
    "customers", DATA_PLATFORM,
)
ORDER_CATEGORIES = Table(
    "gold", "order_categories", ARRIVAL_DATE,
    "The categories of each customer's paid orders, by arrival_date.",
    "customers", DATA_PLATFORM,
)
CUSTOMER_STATE = Table(
    "gold", "customer_state", SNAPSHOT_DATE,
    "Each customer's lifetime state as of the snapshot day: yesterday's state plus what became "
    "visible today.",
    "customers", DATA_PLATFORM,
)
CUSTOMER_CATEGORIES = Table(
    "gold", "customer_categories", SNAPSHOT_DATE,
    "The categories each customer has bought, as of the snapshot day.",
    "customers", DATA_PLATFORM,
)
CUSTOMER_FEATURES = Table(
    "gold", "customer_features", SNAPSHOT_DATE,
    "One point-in-time row per known customer per day: the day's partition uses only data that "
    "had arrived by the end of that day. Features of a domain the business has not delivered "
    "yet are null, not zero.",
    "churn", DATA_SCIENCE, due_after_hours=0,
)
CHURN_LABELS = Table(
    "gold", "churn_labels", SNAPSHOT_DATE,
    "For snapshot day D: churned = no paid order in (D, D+horizon] or an explicit cancellation "
    "in it ([labels] horizon_days). Materializable once data up to D+horizon has arrived.",
    "churn", DATA_SCIENCE,
)

# ── ml ───────────────────────────────────────────────────────────────────────────────────────────

CHURN_MODEL = Table(
    "ml", "churn_model", None,
    "LightGBM churn model (native categoricals, early stopping) with a logistic baseline on the "
    "same time-based split, calibrated probabilities and SHAP drivers; logged to MLflow, "
    "registered as churn_model@challenger, and promoted to @champion only through the gate.",
    "churn", DATA_SCIENCE, kinds_always=("lightgbm", "mlflow"), stored=False,
)
# The asset is the MLflow run; the fitted parameters are also a one-row table the scorer reads.
CLTV_MODEL = Table(
    "ml", "cltv_model", None,
    "Expected revenue per customer (MBG/NBD orders x Gamma-Gamma order value), fitted on the "
    "latest gold features; evaluated by refitting at the start of the latest fully arrived label "
    "window and comparing with the revenue that followed.",
    "churn", DATA_SCIENCE, kinds_always=("scipy", "mlflow"), stored=False,
)
UPLIFT_MODEL = Table(
    "ml", "uplift_model", None,
    "Per customer and action, the predicted uplift on retention and on revenue over the outcome "
    "window: an X-learner on LightGBM fitted on the randomized decision rows whose window has "
    "closed, weighted by their logged propensities; registered as uplift_model and promoted to "
    "@champion only when its held-out Qini beats random targeting and ranking by churn risk. "
    "Until then the budget policy values actions with save rates.",
    "retention", DATA_SCIENCE, kinds_always=("lightgbm", "mlflow"), stored=False,
)
REVENUE_FORECAST = Table(
    "ml", "revenue_forecast", None,
    "Revenue per week (Monday start, paid charges + refunds from gold daily_activity by event "
    "day), overall (segment 'all') and per segment: the whole weeks observed (kind 'actual') "
    "and the next [forecast] horizon_weeks (kind 'forecast') with an interval, from the better "
    "of a seasonal-naive baseline and LightGBM on lags by rolling-origin backtest MASE. The "
    "metadata has both models' MASE and interval coverage and today's revenue at risk.",
    "revenue", DATA_SCIENCE, kinds_always=("lightgbm", "mlflow"),
)
# Not an asset: the feature distribution the drift check compares scores against.
TRAINING_REFERENCE = Table(
    "ml", "training_reference", None,
    "The training rows' feature values, written by the churn model, read by the drift check.",
    "churn", DATA_SCIENCE,
)

# ── scores and decisions ─────────────────────────────────────────────────────────────────────────

SCORES = Table(
    "scores", "daily", SNAPSHOT_DATE,
    "Per at-risk customer and day: calibrated churn probability (champion model), risk band, "
    "CLTV, revenue at risk (probability x CLTV), the top three drivers and the model version "
    "that scored.",
    # Scoring starts when features are due, so scores get an hour more.
    "churn", DATA_SCIENCE, kinds_always=("mlflow",), due_after_hours=1,
)
ACTIONS = Table(
    "decisions", "actions", SNAPSHOT_DATE,
    "The CRM feed: one row per selected customer (policy and daily budget from [decisions] in "
    "settings.toml) with campaign, action, cost, expected value, control flag (selected but "
    "never treated), reason, and the experiment: assignment (policy or explore), randomized, "
    "propensity, and what the policy and the rules would have chosen. The budget policy values "
    "actions with the uplift_model champion when one exists.",
    "retention", RETENTION,
)
WHALES = Table(
    "decisions", "whales", SNAPSHOT_DATE,
    "VIP call list: high value and high or rising risk.",
    "retention", RETENTION,
)
OUTCOMES = Table(
    "decisions", "outcomes", SNAPSHOT_DATE,
    "Per campaign day and fed customer: retained (a paid order) and revenue in the outcome window "
    "after the decision ([scoring] outcome_window_days), treated and control alike; with the "
    "uplift per action (and its 95% interval) in the metadata, and an off-policy evaluation of "
    "the policy, the rules and no action. Materializable once that window has arrived; the "
    "daily_outcomes schedule measures each day as soon as it has.",
    "retention", RETENTION,
)

# ── reports ──────────────────────────────────────────────────────────────────────────────────────

# Not in the table store: an HTML file per day under $CHURN_HOME/reports/brief/.
DAILY_BRIEF = Table(
    "reports", "daily_brief", SNAPSHOT_DATE,
    "The daily retention brief: one self-contained HTML page per scored day (customers and "
    "churn rate, risk by segment, drivers, today's actions against the budget, whales, campaign "
    "results, model health, CLTV). Open the path in the metadata, or run "
    "`churn-assets report --day D --open`.",
    "retention", RETENTION, kinds_always=("html",), stored=False,
)

GOLD_TABLES = (DAILY_ACTIVITY, ORDER_CATEGORIES, CUSTOMER_STATE, CUSTOMER_CATEGORIES,
               CUSTOMER_FEATURES, CHURN_LABELS)
MODEL_TABLES = (CHURN_MODEL, CLTV_MODEL, UPLIFT_MODEL)
DECISION_TABLES = (ACTIONS, WHALES)

TABLES: tuple[Table, ...] = (
    *(t for d in DOMAINS for t in (bronze(d), bronze_quarantine(d))),
    *(t for d in DOMAINS for t in (silver(d), silver_exceptions(d))),
    *GOLD_TABLES, *MODEL_TABLES, REVENUE_FORECAST, TRAINING_REFERENCE, SCORES, ACTIONS, WHALES, OUTCOMES,
    DAILY_BRIEF,
)
BY_KEY: dict[dg.AssetKey, Table] = {t.key: t for t in TABLES}
BY_NAME: dict[str, Table] = {t.full_name: t for t in TABLES}


def table_for(key: dg.AssetKey) -> Table:
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(
            f"asset {key.to_user_string()} is not in the catalogue: add it to churn_assets/catalog.py"
        ) from None


# ── the checks other parts of the graph rely on ──────────────────────────────────────────────────

RECONCILED_WITH_LANDING = "reconciled_with_landing"
# A refused drop (marker contract, unusable file, unannounced shrink) leaves its day as it was;
# training does not wait on it, the run that met it fails and names it.
DROPS_MATCH_MARKERS = "drops_match_markers"

# Silver's checks: name -> (blocking, what it guards). Computed in ``assets/silver.py``; named
# here because training refuses to run while a blocking one has failed.
SILVER_CHECKS: dict[str, tuple[bool, str]] = {
    "keys_unique_and_present": (True, "Natural keys are never null and occur once."),
    "values_in_range": (True, "Amounts, quantities, CSAT and enums obey the contract's rules."),
    "schema_matches_contract": (True, "Columns and types are exactly the written contract."),
    "reconciled_with_bronze": (
        True, "Every bronze row is a silver row, a rejected row or a duplicate, with counts."),
    "reject_share": (True, "Few enough bronze rows were rejected each day (a broken export "
                     "stops gold; a share above the tolerance without proof only warns)."),
    "event_time_not_after_arrival": (
        True, "No event is dated after the day it arrived (beyond the allowed clock skew)."),
    "references_known_customers": (
        True, "Each day's rows name customers already in silver.customers (a few orphans only "
        "warn)."),
    "refunds_reference_orders": (False, "Refunds name an order known to silver (warns)."),
    "volume_vs_trailing_mean": (
        False, "Each day's rows stay near its trailing 7-day mean (warns)."),
}
# Checks that apply to some domains only (the rest apply to every domain).
SILVER_CHECKS_ONLY_FOR: dict[str, set[str]] = {
    "refunds_reference_orders": {"payments"},
    "references_known_customers": {"payments", "events", "tickets", "marketing"},
}


def silver_checks(domain: str) -> dict[str, tuple[bool, str]]:
    return {name: spec for name, spec in SILVER_CHECKS.items()
            if domain in SILVER_CHECKS_ONLY_FOR.get(name, DOMAINS)}


def blocking_data_checks() -> list[dg.AssetCheckKey]:
    """The blocking checks of bronze and silver: training refuses to run while one has failed."""
    keys = [dg.AssetCheckKey(bronze(d).key, RECONCILED_WITH_LANDING) for d in DOMAINS]
    for name, (blocking, _) in SILVER_CHECKS.items():
        if blocking:
            keys += [dg.AssetCheckKey(silver(d).key, name)
                     for d in SILVER_CHECKS_ONLY_FOR.get(name, DOMAINS)]
    return keys


# ── applying the catalogue to the asset definitions ──────────────────────────────────────────────


def freshness_policy(settings: Settings, due_after_hours: int = 0) -> dg.FreshnessPolicy:
    """A daily table's promise: a day's partition can only exist after the day ends, and is late
    ``[freshness] due_hours`` (plus ``due_after_hours``) after that; it warns after a day."""
    due = timedelta(hours=24 + settings.freshness.due_hours + due_after_hours)
    return dg.FreshnessPolicy.time_window(fail_window=due, warn_window=timedelta(hours=24))


def label(assets: Iterable[dg.AssetsDefinition], env: str, settings: Settings
          ) -> list[dg.AssetsDefinition]:
    """Every asset spec with its table's group, description, owners, tags, freshness policy and
    the kinds of ``env``.

    Assets declare how a table is computed; this gives each the catalogue's word on what it is,
    so the UI can be filtered by layer, domain, owner and PII whatever the environment.
    """

    def labelled(spec: dg.AssetSpec) -> dg.AssetSpec:
        table = table_for(spec.key)
        # Kinds are stored as tags; drop any the asset set so the environment's replace them.
        tags = {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")}
        fresh = (None if table.due_after_hours is None
                 else freshness_policy(settings, table.due_after_hours))
        return spec.replace_attributes(
            freshness_policy=fresh,
            group_name=table.layer,
            description=table.description,
            owners=[table.owner],
            tags={**tags, **table.tags},
            kinds=table.kinds(env),
        )

    return dg.map_asset_specs(labelled, list(assets))
