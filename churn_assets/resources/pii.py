"""The secret that keys the email and phone hashes in silver."""

from __future__ import annotations

import os

import dagster as dg

from churn_assets.ingest.landing import SIMULATOR

PII_KEY_ENV = "CHURN_PII_KEY"
# Good enough for a laptop and the simulator; a shared or production deployment must set
# CHURN_PII_KEY (the Databricks environment refuses to start without it). Changing the key
# changes every hash, so customers no longer join across the change.
LOCAL_PII_KEY = "churn-assets-local-development-key"


class PiiKey(dg.ConfigurableResource):
    """Keys the SHA-256 hashes that replace email and phone. Never logged or shown."""

    key: str

    def refuse_public_key_for(self, drops) -> None:
        """Raise ``PiiKeyError`` when real data (any drop the simulator did not write) would be
        hashed with the public local key: anyone could re-identify every hash from a list of
        e-mail addresses. Simulated worlds and tests may keep the local key."""
        if self.key != LOCAL_PII_KEY:
            return
        real = [drop for drop in drops if drop.source != SIMULATOR]
        if real:
            raise PiiKeyError(public_key_message(real[0].path, len(real)))

    @classmethod
    def from_env(cls, required: bool = False) -> PiiKey:
        if os.environ.get(PII_KEY_ENV):
            # EnvVar keeps the value out of the run config the UI displays.
            return cls(key=dg.EnvVar(PII_KEY_ENV))
        if required:
            raise ValueError(f"set {PII_KEY_ENV} to the secret that keys the PII hashes")
        return cls(key=LOCAL_PII_KEY)


class PiiKeyError(ValueError):
    pass


def public_key_message(example, count: int) -> str:
    return (
        f"refusing to hash personal data with the public local key: {count:,} drop(s) were not "
        f"written by the simulator (e.g. {example}), and {PII_KEY_ENV} is not set. Set it to a "
        f"secret kept outside the repository, e.g. `export {PII_KEY_ENV}=$(python -c "
        "'import secrets; print(secrets.token_hex(32))')`, and use the same value on every "
        "run: changing it changes every email_hash and phone_hash."
    )


def refuse_public_key_in_env(drops) -> None:
    """``PiiKey.refuse_public_key_for`` with the key this process's environment gives."""
    PiiKey(key=os.environ.get(PII_KEY_ENV) or LOCAL_PII_KEY).refuse_public_key_for(drops)
