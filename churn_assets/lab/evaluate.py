"""Evaluate the models on a simulated business, against what the simulator knows to be true.

``simulate_world`` runs the real path: simulator -> landing drops -> bronze -> silver -> gold
features for every snapshot day -> churn labels. ``oracle_report`` trains the churn model on it
and scores the same validation rows with two oracles built from ``truth/``:

- **hazard oracle**: the true daily churn hazard on the snapshot day (1 for customers whose
  true churn day has passed). This is "the simulator's true hazard", but the label is not
  "churned within H days": it is "no paid order within H days, or a cancellation", and a
  customer who is alive yet buys rarely is often labelled churned. A model that sees order
  frequency can therefore beat this oracle on the label.
- **label oracle**: the probability of the label itself under the true latent state on the
  snapshot day (engagement, satisfaction, hazard, payment risk, segment), holding that state
  fixed over the window and using the simulator's order process: daily paid orders ~ Poisson(mu)
  while alive, churn ~ Geometric(hazard), 15 % of churns explicit (labelled churned whatever was
  ordered). The closest thing to a ceiling for a model that sees only the data.

``cltv_report`` fits the CLTV model at a cutoff day and compares its prediction for the rest of
the history with the revenue that really came.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from churn_assets import catalog
from churn_assets.ingest.bronze import ingest_drops
from churn_assets.ingest.landing import list_drops
from churn_assets.ml import metrics as m
from churn_assets.ml.churn_model import ChurnTrainingConfig, train_churn_model
from churn_assets.ml.cltv import actual_revenue, evaluate_cltv, fit_cltv
from churn_assets.ml.cltv_compare import compare_cltv
from churn_assets.resources.store import DateWindow, TableStore
from churn_assets.settings import DOMAINS, Paths
from churn_assets.simulator import SimConfig, simulate
from churn_assets.simulator.sparse import SparseRetailParams
from churn_assets.simulator.state import EXPLICIT_CANCEL_SHARE, SEGMENT_BUY
from churn_assets.simulator.vocab import SEGMENTS
from churn_assets.steps.reads import column_bound, to_polars
from churn_assets.transforms.gold import (
    customer_state_as_of,
    daily_activity,
    features,
    paid_order_categories,
)
from churn_assets.transforms.labels import churn_labels

# The simulator's order process (``BusinessState.step``): sessions ~ Poisson(1.8 * engagement),
# a failed payment is retried with probability 0.6 and a retry recovers with probability 0.7.
SESSIONS_PER_ENGAGEMENT = 1.8
UNRECOVERED_SHARE = 1.0 - 0.6 * 0.7


@dataclass
class SimulatedWorld:
    """A simulated business turned into silver, gold features and churn labels."""

    paths: Paths
    config: SimConfig
    silver: dict[str, pl.DataFrame]
    features: pl.DataFrame
    labels: pl.DataFrame
    horizon_days: int

    @property
    def last_day(self) -> date:
        return self.config.start + timedelta(days=self.config.days - 1)

    def truth_customers(self) -> pl.DataFrame:
        return pl.read_parquet(self.paths.truth / "customers.parquet")

    def hazard(self, days: list[date]) -> pl.DataFrame:
        files = [self.paths.truth / "hazard" / f"{d.isoformat()}.parquet" for d in days]
        return pl.concat([pl.read_parquet(f) for f in files if f.exists()])


def simulate_world(home: Path, config: SimConfig, *, horizon_days: int = 30,
                   first_snapshot_day: int = 30, snapshot_every: int = 1,
                   pii_key: str = "evaluation-only-key") -> SimulatedWorld:
    """Simulate ``config`` into ``home`` and build features for snapshot days from
    ``first_snapshot_day`` (days into the history: windows need some history) every
    ``snapshot_every`` days, with labels wherever the ``horizon_days`` window has closed."""
    paths = Paths(Path(home))
    simulate(paths, config)
    silver = silver_from_landing(paths, pii_key)
    days = [config.start + timedelta(days=i)
            for i in range(first_snapshot_day, config.days, snapshot_every)]
    feature_frame = features_for_days(silver, days)
    last = config.start + timedelta(days=config.days - 1)
    return SimulatedWorld(paths, config, silver, feature_frame,
                          labels_for(feature_frame, silver, horizon_days, last), horizon_days)


def silver_from_landing(paths: Paths, pii_key: str = "evaluation-only-key"
                        ) -> dict[str, pl.DataFrame]:
    """Every drop of every domain through bronze and silver in one window."""
    from churn_assets.transforms.silver import clean

    ingested_at = datetime.now(UTC)
    out = {}
    for domain in DOMAINS:
        bronze = ingest_drops(domain, list_drops(paths.landing, domain), ingested_at).rows
        out[domain] = clean(domain, bronze, None, pii_key).rows.to_native()
    return out


def features_for_days(silver: dict[str, pl.DataFrame], days: list[date],
                      domains: tuple[str, ...] = DOMAINS) -> pl.DataFrame:
    """``FEATURE_SCHEMA`` rows for each day, from the silver ``domains`` only (the others are
    absent: their features are null, as for a business without them)."""
    present = {d: (silver[d] if d in domains else None) for d in DOMAINS}
    activity = daily_activity(present["payments"], present["events"], present["tickets"],
                              present["marketing"]).collect()
    categories = (paid_order_categories(present["payments"]).collect()
                  if present["payments"] is not None else None)
    absent = {d for d, frame in present.items() if frame is None}
    frames = []
    for day in days:
        state = customer_state_as_of(activity, categories, present["customers"], day)
        frames.append(features(state, activity, present["tickets"], day, absent).collect())
    return pl.concat(frames)


def labels_for(feature_frame: pl.DataFrame, silver: dict[str, pl.DataFrame | None],
               horizon_days: int, last_day: date) -> pl.DataFrame:
    """Churn labels for every snapshot day whose window ends by ``last_day``."""
    parts = [
        churn_labels(part, silver["payments"], silver.get("customers"), day, horizon_days)
        .collect()
        for (day,), part in feature_frame.partition_by("snapshot_date", as_dict=True).items()
        if day + timedelta(days=horizon_days) <= last_day
    ]
    if not parts:
        raise ValueError(f"no snapshot day has a closed {horizon_days}-day label window by "
                         f"{last_day}: simulate more days")
    return pl.concat(parts).sort("snapshot_date", "customer_id")


def oracle_scores(world: SimulatedWorld, rows: pl.DataFrame) -> pl.DataFrame:
    """Per row (``snapshot_date``, ``customer_id``): ``hazard_oracle``, ``label_oracle`` and
    ``alive`` (the customer's true churn day is after the snapshot)."""
    truth = world.truth_customers()
    if "purchase_rate_per_day" in truth.columns:
        summary = json.loads((world.paths.truth / "summary.json").read_text())
        return _purchase_process_oracle(truth, rows, world.horizon_days, summary)
    truth = truth.select(
        "customer_id", "churn_date", "segment", "payment_risk")
    days = rows["snapshot_date"].unique().to_list()
    hazard = world.hazard(sorted(set(days) | {d + timedelta(days=1) for d in days})).select(
        "customer_id", snapshot_date=pl.col("day"), hazard="hazard",
        engagement="engagement", satisfaction="satisfaction")
    # Customers who signed up on the snapshot day are at risk from the next day on.
    next_day = hazard.with_columns(pl.col("snapshot_date") - pl.duration(days=1))
    joined = (
        rows.select("snapshot_date", "customer_id")
        .join(hazard, on=["snapshot_date", "customer_id"], how="left")
        .join(next_day, on=["snapshot_date", "customer_id"], how="left", suffix="_next")
        .join(truth, on="customer_id", how="left")
    )
    alive = (pl.col("churn_date").is_null() | (pl.col("churn_date") > pl.col("snapshot_date")))
    state = {c: pl.coalesce(c, f"{c}_next") for c in ("hazard", "engagement", "satisfaction")}
    buy = pl.col("segment").replace_strict(list(SEGMENTS), SEGMENT_BUY.tolist(),
                                           return_dtype=pl.Float64)
    joined = joined.with_columns(
        alive=alive,
        h=state["hazard"].fill_null(state["hazard"].median()),
        mu=SESSIONS_PER_ENGAGEMENT * state["engagement"]
        * (buy * (0.45 + 0.75 * state["satisfaction"])).clip(0.0, 1.0)
        * (1.0 - UNRECOVERED_SHARE * pl.col("payment_risk")),
    )
    alive_now, h = joined["alive"].to_numpy(), joined["h"].to_numpy()
    mu = joined["mu"].fill_null(joined["mu"].median()).to_numpy()
    return joined.select("snapshot_date", "customer_id", "alive").with_columns(
        hazard_oracle=np.where(alive_now, h, 1.0),
        label_oracle=np.where(alive_now, _label_probability(h, mu, world.horizon_days), 1.0),
    )


def _purchase_process_oracle(truth: pl.DataFrame, rows: pl.DataFrame, horizon: int,
                             summary: dict[str, Any]) -> pl.DataFrame:
    """The sparse-retail preset's truth: a customer still buying on the snapshot day makes no
    purchase in the next H days with the probability their true state gives (rate, regularity,
    fading, the season; ``simulator/sparse.py::no_purchase_probability``), one who has left
    never buys. ``hazard_oracle`` is the chance of starting to leave after the next purchase
    (1 once gone)."""
    from churn_assets.simulator.sparse import no_purchase_probability, true_state

    state = true_state(truth, rows, horizon, *_sparse_world(summary))
    return rows.select("snapshot_date", "customer_id").with_columns(
        alive=pl.Series(~state.gone),
        hazard_oracle=np.where(state.gone, 1.0, state.dropout),
        label_oracle=no_purchase_probability(state),
    )


def _sparse_world(summary: dict[str, Any]) -> tuple:
    """(start, days, params) of a sparse-retail world from its ``summary.json``; a world written
    before the preset grew its realism (no ``params``) is the pure BG/NBD one."""
    from churn_assets.simulator.sparse import SparseRetailParams

    params = summary.get("params")
    params = (SparseRetailParams(**params | {"regularity_shape": tuple(params["regularity_shape"])})
              if params else SparseRetailParams.pure())
    return date.fromisoformat(summary["start"]), int(summary["days"]), params


def _label_probability(h: np.ndarray, mu: np.ndarray, horizon: int) -> np.ndarray:
    """P(no paid order in the window, or an explicit cancellation in it) for a customer alive
    on the snapshot day with constant daily hazard ``h`` and paid-order rate ``mu``."""
    k = np.arange(1, horizon + 1)[None, :]  # churn on day k: k - 1 active days before it
    churn_on_k = (1 - h[:, None]) ** (k - 1) * h[:, None]
    ordered_before = 1 - np.exp(-mu[:, None] * (k - 1))
    survives = (1 - h) ** horizon * (1 - np.exp(-mu * horizon))
    retained = survives + (1 - EXPLICIT_CANCEL_SHARE) * (churn_on_k * ordered_before).sum(axis=1)
    return 1.0 - retained


def oracle_report(world: SimulatedWorld, config: ChurnTrainingConfig | None = None
                  ) -> dict[str, Any]:
    """Validation metrics of the model, its baseline and both oracles on the same rows, ECE
    before and after calibration, and the same AUCs on the rows of truly alive customers."""
    result = train_churn_model(world.features, world.labels, config)
    valid = result.validation
    y = valid["churned"].to_numpy()
    scores = {
        "model": result.validation_probability,
        "baseline": result.baseline_probability,
    }
    simulated = (world.paths.truth / "customers.parquet").exists()
    alive = np.ones(valid.height, dtype=bool)
    if simulated:
        oracle = valid.select("snapshot_date", "customer_id").join(
            oracle_scores(world, valid), on=["snapshot_date", "customer_id"], how="left")
        alive = oracle["alive"].to_numpy()
        scores["hazard_oracle"] = oracle["hazard_oracle"].to_numpy()
        scores["label_oracle"] = oracle["label_oracle"].to_numpy()
    auc = {name: m.classification_metrics(y, p)["roc_auc"] for name, p in scores.items()}
    auc_alive = {name: m.classification_metrics(y[alive], p[alive])["roc_auc"]
                 for name, p in scores.items()}
    auc["recency_alone"] = result.recency_auc
    # Where the history is long enough to show a customer's rhythm (3+ orders), a model of the
    # gaps can beat RFM; with one or two orders there is little beyond recency and age.
    orders = valid["orders_total"].fill_null(0).to_numpy()
    by_orders = {}
    for name, mask in (("1", orders <= 1), ("2", orders == 2), ("3+", orders >= 3)):
        if 0 < y[mask].sum() < mask.sum():
            by_orders[name] = {"rows": int(mask.sum()), "churned": float(y[mask].mean())} | {
                k: m.classification_metrics(y[mask], p[mask])["roc_auc"]
                for k, p in scores.items()}
    if result.model.spec.process is not None:
        # Ranking by the MBG/NBD expected orders alone: on a world that is itself BG/NBD, about
        # the best any model of the observed purchase history can do.
        expected = result.model.spec.process.add(valid)["expected_orders_horizon"]
        auc["expected_orders_alone"] = m.classification_metrics(
            y, 1.0 / (1.0 + expected.fill_null(0.0).to_numpy()))["roc_auc"]
    return {
        "split": result.split.describe(),
        "best_iteration": result.best_iteration,
        "scorer": result.chosen,
        "scorer_reason": result.choice,
        "gain_over_baseline": auc["model"] - auc["baseline"],
        "ece_baseline": result.metrics["baseline"]["ece"],
        "roc_auc": auc,
        "roc_auc_alive_rows": auc_alive,
        "roc_auc_by_orders": by_orders,
        "alive_share": float(alive.mean()),
        "pr_auc": {"model": result.metrics["model"]["pr_auc"],
                   "baseline": result.metrics["baseline"]["pr_auc"]},
        "ece_uncalibrated": result.metrics["model_uncalibrated"]["ece"],
        "ece_calibrated": result.metrics["model"]["ece"],
        "ece_label_oracle": m.expected_calibration_error(y, scores["label_oracle"])
        if simulated else None,
        "brier": {"model": result.metrics["model"]["brier"],
                  "model_uncalibrated": result.metrics["model_uncalibrated"]["brier"],
                  "baseline": result.metrics["baseline"]["brier"]},
        "lift_at_10pct": {"model": result.metrics["model"]["lift_at_10pct"],
                          "baseline": result.metrics["baseline"]["lift_at_10pct"]},
        "segments": result.segments.to_dicts(),
        "top_features": result.model.importance.head(5).to_dicts(),
    }


def pipeline_report(paths: Paths, store: TableStore, horizon_days: int, training_days: int,
                    config: ChurnTrainingConfig | None = None) -> dict[str, Any]:
    """``oracle_report`` on what the pipeline wrote to ``store`` (the environment's table store):
    the gold features (the at-risk population the churn model trains on) and churn labels over
    the latest ``training_days`` labelled snapshots, against the simulator's truth under the
    same data root."""
    from churn_assets.ml.dataset import only_at_risk

    labels_table = catalog.CHURN_LABELS
    last = column_bound(store, labels_table.full_name, labels_table.partition_column, "max")
    if last is None:
        raise ValueError("no churn labels in the lake: run `churn-assets run` first")
    window = DateWindow(last - timedelta(days=training_days - 1), last + timedelta(days=1))
    labels = to_polars(store.read(labels_table.full_name, window, labels_table.partition_column))
    features_table = catalog.CUSTOMER_FEATURES
    features = only_at_risk(to_polars(store.read(
        features_table.full_name, window, features_table.partition_column)), horizon_days)
    world = SimulatedWorld(paths, None, {}, features, labels, horizon_days)
    return oracle_report(world, config or ChurnTrainingConfig(horizon_days=horizon_days))


def pipeline_cltv_report(store: TableStore, horizon_days: int) -> dict[str, Any]:
    """``compare_cltv`` on what the pipeline wrote to ``store``: the holdout is the latest label
    window (the features of its first day and, for the boosted model, of ``horizon_days``
    earlier), against the revenue silver holds for it."""
    labels_table, features_table = catalog.CHURN_LABELS, catalog.CUSTOMER_FEATURES
    cutoff = column_bound(store, labels_table.full_name, labels_table.partition_column, "max")
    if cutoff is None:
        raise ValueError("no churn labels in the lake: run `churn-assets run` first")
    at = {}
    for day in (cutoff, cutoff - timedelta(days=horizon_days)):
        frame = to_polars(store.read(features_table.full_name, DateWindow.day(day),
                                     features_table.partition_column))
        if frame.height:
            at[day] = frame
    payments = to_polars(store.read(
        catalog.silver("payments").full_name,
        columns=["customer_id", "transaction_type", "status", "amount", "event_date",
                 "arrival_date"]))
    return compare_cltv(at, payments, cutoff, horizon_days, payments["arrival_date"].min())


def world_report(home: Path, config: SimConfig, *, sparse: bool, horizon_days: int = 90,
                 training_days: int = 120, snapshot_every_days: int = 1,
                 validation_days: int = 14,
                 sparse_params: SparseRetailParams | None = None) -> dict[str, Any]:
    """Simulate a world (default or sparse-retail preset, with ``sparse_params``) into ``home``
    and report the churn model (against the truth) and both CLTV models, computing features
    only for the snapshot days training reads: the same numbers the pipeline gives with these
    settings, faster."""
    from churn_assets.ml.dataset import only_at_risk
    from churn_assets.simulator.sparse import simulate_sparse

    paths = Paths(Path(home))
    if sparse:
        simulate_sparse(paths, config, sparse_params)
    else:
        simulate(paths, config)
    silver = silver_from_landing(paths)
    last = config.start + timedelta(days=config.days - 1)
    labelled_last = last - timedelta(days=horizon_days)
    validation = [labelled_last - timedelta(days=i) for i in range(validation_days)]
    trainable = labelled_last - timedelta(days=validation_days - 1 + horizon_days)
    first = labelled_last - timedelta(days=training_days - 1)
    steps = (trainable - first).days // snapshot_every_days
    training = [trainable - timedelta(days=i * snapshot_every_days) for i in range(steps + 1)]
    # Calibration reads every day of its latest window, whatever the snapshot spacing.
    training += [trainable - timedelta(days=i)
                 for i in range(ChurnTrainingConfig().calibration_days or 0)]
    cltv_days = [labelled_last, labelled_last - timedelta(days=horizon_days)]
    days = sorted({d for d in (*validation, *training, *cltv_days) if d >= config.start})
    domains = ("customers", "payments") if sparse else DOMAINS
    features = features_for_days(silver, days, domains)
    labels = labels_for(features, silver, horizon_days, last)
    model_rows = features.filter(pl.col("snapshot_date").is_in([*validation, *training]))
    world = SimulatedWorld(paths, config, silver, only_at_risk(model_rows, horizon_days),
                           labels, horizon_days)
    churn = oracle_report(world, ChurnTrainingConfig(
        horizon_days=horizon_days, validation_days=validation_days,
        snapshot_every_days=snapshot_every_days))
    at = {d: f for (d,), f in features.filter(pl.col("snapshot_date").is_in(cltv_days))
          .partition_by("snapshot_date", as_dict=True).items()}
    cltv = compare_cltv(at, silver["payments"], labelled_last, horizon_days, config.start)
    if sparse:
        cltv["oracle"] = _cltv_oracle(paths, features, silver["payments"], labelled_last,
                                      horizon_days)
    return {"world": {"preset": "sparse-retail" if sparse else "default",
                      "customers": config.customers, "days": config.days,
                      "training_days": training_days,
                      "snapshot_every_days": snapshot_every_days},
            "churn": churn, "cltv": cltv}


def _cltv_oracle(paths: Paths, features: pl.DataFrame, payments: pl.DataFrame, cutoff: date,
                 horizon_days: int) -> dict[str, float]:
    """The sparse preset's true expected revenue over the holdout, from every known customer's
    true state on ``cutoff`` (``simulator/sparse.py::expected_revenue``, simulated forward);
    Spearman and top decile of that: about the best a CLTV ranking can do."""
    from churn_assets.simulator.sparse import expected_revenue, true_state

    start, days, params = _sparse_world(json.loads((paths.truth / "summary.json").read_text()))
    # Sorted: the simulated draws then fall to the same customers on every run.
    rows = features.filter(pl.col("snapshot_date") == cutoff).sort("customer_id")
    truth = pl.read_parquet(paths.truth / "customers.parquet")
    state = true_state(truth, rows, horizon_days, start, days, params)
    expected = rows.select("customer_id").with_columns(cltv=expected_revenue(state, params))
    actual = actual_revenue(payments, cutoff, cutoff + timedelta(days=horizon_days))
    return evaluate_cltv(expected, actual).as_dict()


def cltv_report(world: SimulatedWorld, cutoff: date, horizon_days: int | None = None
                ) -> dict[str, Any]:
    """Fit CLTV on the features of ``cutoff`` (history before the simulation is unseen, so
    ``history_start`` is its first day) and compare the prediction over ``horizon_days``
    (default: to the end of the history) with the revenue that came; a naive "last 90 days'
    revenue, repeated" forecast is scored alongside for scale."""
    horizon = horizon_days or (world.last_day - cutoff).days
    snapshot = world.features.filter(pl.col("snapshot_date") == cutoff)
    if snapshot.height == 0:
        raise ValueError(f"no features on {cutoff}")
    model = fit_cltv(snapshot, history_start=world.config.start)
    predicted = model.predict(snapshot, horizon)
    actual = actual_revenue(world.silver["payments"], cutoff, cutoff + timedelta(days=horizon))
    naive = snapshot.select(
        "customer_id",
        cltv=pl.col("revenue_90d").fill_null(0.0).clip(lower_bound=0.0) * horizon / 90)
    return {
        "cutoff": cutoff.isoformat(), "horizon_days": horizon,
        "parameters": {k: v for k, v in vars(model).items() if k != "history_start"},
        "cltv": evaluate_cltv(predicted, actual).as_dict(),
        "naive_last_90_days": evaluate_cltv(naive, actual).as_dict(),
        "predicted_365_total": float(model.predict(snapshot, 365)["cltv"].sum()),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m churn_assets.lab.evaluate --preset sparse-retail``: simulate a world in a
    temporary folder, print and save (``--out``) its churn and CLTV report."""
    import argparse
    import json
    import tempfile

    from churn_assets.simulator.sparse import sparse_retail_config

    parser = argparse.ArgumentParser(prog="python -m churn_assets.lab.evaluate")
    parser.add_argument("--preset", choices=["default", "sparse-retail"], default="default")
    parser.add_argument("--customers", type=int)
    parser.add_argument("--days", type=int)
    parser.add_argument("--training-days", type=int)
    parser.add_argument("--snapshot-every-days", type=int)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pure-bgnbd", action="store_true",
                        help="sparse-retail as plain BG/NBD + Gamma-Gamma: no replenishment "
                             "cycles, fading or season (the preset of issue 20's first round)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    sparse = args.preset == "sparse-retail"
    if sparse:
        config = sparse_retail_config(customers=args.customers or 23_570,
                                      days=args.days or 546, seed=args.seed)
    else:
        config = SimConfig(customers=args.customers or 3000, days=args.days or 240,
                           seed=args.seed)
    with tempfile.TemporaryDirectory() as home:
        report = world_report(
            Path(home), config, sparse=sparse,
            training_days=args.training_days or (365 if sparse else 120),
            snapshot_every_days=args.snapshot_every_days or (7 if sparse else 1),
            sparse_params=SparseRetailParams.pure() if args.pure_bgnbd else None)
    text = json.dumps(report, indent=1, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    churn, cltv = report["churn"], report["cltv"]
    auc = churn["roc_auc"]
    print(f"{args.preset}: {config.customers:,} customers, {config.days} days")
    print("  churn ROC-AUC " + ", ".join(f"{k} {v:.4f}" for k, v in auc.items()))
    for bucket, v in churn["roc_auc_by_orders"].items():
        print(f"  {bucket} order(s) at the snapshot ({v['rows']:,} rows, {v['churned']:.0%} churn): "
              f"model {v['model']:.4f}, baseline {v['baseline']:.4f}")
    print(f"  ECE {churn['ece_calibrated']:.4f} (uncalibrated {churn['ece_uncalibrated']:.4f}); "
          f"{churn['scorer_reason']}")
    for name, v in cltv["models"].items():
        print(f"  CLTV {name}: predicted {v['total_predicted']:,.0f} vs actual "
              f"{v['total_actual']:,.0f} ({v['total_error']:+.1%}), Spearman {v['spearman']:.3f}, "
              f"top decile {v['top_decile_share']:.1%}, MAE {v['mae_per_customer']:.2f}")
    print(f"  CLTV kept: {cltv['chosen']} ({cltv['reason']})")
    if "oracle" in cltv:
        print(f"  CLTV oracle (true parameters): Spearman {cltv['oracle']['spearman']:.3f}, top "
              f"decile {cltv['oracle']['top_decile_share']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
