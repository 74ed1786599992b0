"""churn-assets: daily churn-retention decisions as a Dagster asset graph."""

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    # Built on load, not on import: importing the simulator or CLI must not read settings.
    from churn_assets.definitions import build_definitions

    return build_definitions()
