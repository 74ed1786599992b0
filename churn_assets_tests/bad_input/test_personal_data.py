"""Personal data through a real import and real bronze/silver runs: only declared attributes
reach silver, shifted e-mails are rejected without being quoted, previews and the event log
never show raw contact data, and real data is refused with the public local key."""

from __future__ import annotations

from datetime import date

import dagster as dg
import polars as pl
import pytest

from churn_assets.cli import main
from churn_assets.ingest.importer import import_customers, parse_mapping
from churn_assets.settings import Paths, SettingsError, load_settings
from churn_assets_tests.bad_input.conftest import delta
from churn_assets_tests.conftest import materialize_range

DAY = date(2011, 1, 1)
EXPORT = (
    "id,created,Country,Tier,contact_email,mobile_number,home_address,segment\n"
    "c1,2011-01-01,France,Gold,ann@example.org,+33 6 12 34 56 78,12 High Street,smb\n"
    "c2,2011-01-01,Spain,Silver,bob@example.org,+34 612 345 678,3 Mill Road,jane.doe@example.com\n"
    "c3,2011-01-01,Italy,gold,cy@example.org,+39 312 345 6789,7 Park Lane,enterprise\n"
)
SECRETS = ("ann@example.org", "bob@example.org", "jane.doe@example.com", "12 34 56 78",
           "High Street", "Mill Road")


@pytest.fixture
def imported(tmp_path) -> Paths:
    paths = Paths(tmp_path / "home")
    paths.home.mkdir()
    paths.settings_file.write_text(
        "[partitions]\nstart = 2010-12-01\n\n[customers]\n"
        'attributes = [{ name = "Country", type = "text" }, { name = "Tier", type = "category" }]\n')
    source = tmp_path / "crm.csv"
    source.write_text(EXPORT)
    # The README's example: only an id and a signup date mapped; status is defaulted.
    import_customers(source, parse_mapping("customer_id=id,signup_at=created"), paths)
    return paths


def silver_customers(paths, instance):
    keys = [dg.AssetKey(["bronze", "customers"]), dg.AssetKey(["bronze", "customers_quarantine"]),
            dg.AssetKey(["silver", "customers"]), dg.AssetKey(["silver", "customers_exceptions"])]
    return materialize_range(paths, DAY, DAY, instance, selection=keys)


def test_only_declared_attributes_reach_silver(imported, instance):
    result = silver_customers(imported, instance)
    silver = delta(imported, "silver.customers")
    exceptions = delta(imported, "silver.customers_exceptions")
    bronze = delta(imported, "bronze.customers")
    assert bronze.height == 3 == silver.height + exceptions.height  # nothing lost
    assert {"contact_email", "mobile_number", "home_address"} <= set(bronze.columns)
    assert not {"contact_email", "mobile_number", "home_address"} & set(silver.columns)
    assert silver.select("customer_id", "Country", "Tier", "status").sort("customer_id").rows() \
        == [("C1", "France", "gold", "active"), ("C3", "Italy", "gold", "active")]
    (reason,) = exceptions["reason"].to_list()
    assert "segment holds what looks like an e-mail address" in reason and "jane" not in reason
    # Nothing personal anywhere in the run's event log (previews, reasons, check metadata).
    logs = " ".join(str(event) for event in instance.all_logs(result.run_id))
    for secret in SECRETS:
        assert secret not in logs, secret


def test_real_data_with_the_public_key_is_refused(imported, instance, monkeypatch, capsys):
    monkeypatch.delenv("CHURN_PII_KEY")
    result = silver_customers(imported, instance)
    assert not result.success
    failure = [e for e in instance.all_logs(result.run_id) if e.dagster_event
               and e.dagster_event.is_step_failure][0]
    assert "CHURN_PII_KEY" in str(failure) and "not written by the simulator" in str(failure)
    assert not (imported.lake / "bronze" / "customers").exists()

    monkeypatch.setenv("CHURN_HOME", str(imported.home))
    capsys.readouterr()
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "export CHURN_PII_KEY=" in err


def test_simulated_worlds_keep_the_local_key(tiny_world, instance, monkeypatch):
    from churn_assets_tests.bad_input.conftest import TINY_START, bronze

    monkeypatch.delenv("CHURN_PII_KEY")
    assert bronze(tiny_world, instance, TINY_START, TINY_START, ["customers"]).success


@pytest.mark.parametrize(("declared", "message"), [
    ('{ name = "contact_email", type = "text" }', "looks like personal data"),
    ('{ name = "Segment", type = "text" }', "contract or metadata column"),
    ('{ name = "Tier", type = "colour" }', "type"),
])
def test_attribute_declarations_are_checked(tmp_path, declared, message):
    paths = Paths(tmp_path)
    paths.settings_file.write_text(f"[customers]\nattributes = [{declared}]\n")
    with pytest.raises(SettingsError, match=message):
        load_settings(paths)


def test_previews_mask_values_in_any_column():
    from churn_assets.assets.common import markdown_preview

    frame = pl.DataFrame({"segment": ["x@y.io"], "home_address": ["1 A Street"],
                          "note": ["call +44 20 7946 0958"], "region": ["north"]})
    preview = markdown_preview(frame)
    assert "x@y.io" not in preview and "home_address" not in preview and "north" in preview
