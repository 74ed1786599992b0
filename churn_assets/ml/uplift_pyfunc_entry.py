"""The registered uplift model's code (MLflow "models from code"): MLflow copies this file into
the model and runs it on load, instead of unpickling a Python object."""

from mlflow.models import set_model

from churn_assets.ml.uplift_registry import UpliftPyfunc

set_model(UpliftPyfunc())
