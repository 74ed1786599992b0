"""The model lifecycle, without Dagster: training set and time split (``dataset``), the churn
model and its baseline (``churn_model``), metrics, CLTV (``cltv``), MLflow tracking, registry and
the promotion gate (``registry``, ``gate``), and evaluation on simulated worlds (``evaluate``)."""
