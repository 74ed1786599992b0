"""The secret that keys the email and phone hashes in silver."""

from __future__ import annotations

import os

import dagster as dg

PII_KEY_ENV = "CHURN_PII_KEY"
# Good enough for a laptop and the simulator; a shared or production deployment must set
# CHURN_PII_KEY (the Databricks environment refuses to start without it). Changing the key
# changes every hash, so customers no longer join across the change.
LOCAL_PII_KEY = "churn-assets-local-development-key"


class PiiKey(dg.ConfigurableResource):
    """Keys the SHA-256 hashes that replace email and phone. Never logged or shown."""

    key: str

    @classmethod
    def from_env(cls, required: bool = False) -> PiiKey:
        if os.environ.get(PII_KEY_ENV):
            # EnvVar keeps the value out of the run config the UI displays.
            return cls(key=dg.EnvVar(PII_KEY_ENV))
        if required:
            raise ValueError(f"set {PII_KEY_ENV} to the secret that keys the PII hashes")
        return cls(key=LOCAL_PII_KEY)
