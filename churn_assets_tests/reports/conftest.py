import pytest

from churn_assets_tests.scored_world import shared_scored_world


@pytest.fixture(scope="session")
def scored_world(tmp_path_factory, worker_id):
    """Built once for the whole test run (shared by pytest-xdist workers); tests only read it,
    or copy it before changing it."""
    return shared_scored_world(tmp_path_factory, worker_id)
