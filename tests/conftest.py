import os
import uuid
from pathlib import Path

import pytest

# Qt renders offscreen in tests; set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The suite runs in one worker per core (pytest-xdist, pyproject's addopts): one torch thread each, and in
# every process a test starts, or the workers' threads spin against each other (10x slower on 2 cores).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# The PostgreSQL server the store's tests also run on: scripts/install.sh sets this one up on a fresh root
# machine (scripts/postgres_test_server.sh); AUTOMLP_TEST_POSTGRES_URL names another. The role must be
# allowed to create schemas in its database: every test gets a fresh one, dropped afterwards.
POSTGRES_URL = os.environ.get("AUTOMLP_TEST_POSTGRES_URL",
                              "postgresql+psycopg://automlp:automlp@127.0.0.1:5432/automlp")


@pytest.fixture
def shared_data() -> Path:
    """The real datasets beside the checkout; tests that use them skip cleanly when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


_postgres_unreachable: list[str] = []  # why the server cannot be used, once found out


def _no_postgres(reason: str):
    # CI sets AUTOMLP_TEST_POSTGRES_REQUIRED: there a missing server fails the tests instead of skipping them
    if os.environ.get("AUTOMLP_TEST_POSTGRES_REQUIRED"):
        pytest.fail(reason)
    pytest.skip(reason)


def _postgres_admin():
    """An autocommit connection to the test server's own database, or a skip saying why there is none."""
    if _postgres_unreachable:
        _no_postgres(_postgres_unreachable[0])
    import sqlalchemy as sa
    try:
        import psycopg
    except ImportError:
        _postgres_unreachable.append("the PostgreSQL driver is not installed (pip install -e '.[postgres]')")
        _no_postgres(_postgres_unreachable[0])
    url = sa.engine.make_url(POSTGRES_URL)
    try:
        return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                               dbname=url.database, autocommit=True, connect_timeout=3), url
    except psycopg.Error as error:
        _postgres_unreachable.append(f"no PostgreSQL server for the tests at "
                                     f"{url.render_as_string(hide_password=True)}: {str(error).strip()}")
        _no_postgres(_postgres_unreachable[0])


@pytest.fixture
def postgres_url(tmp_path, monkeypatch):
    """The URL of a fresh, empty store on the PostgreSQL test server: a schema of its own (the URL sets
    the search path; a schema is made in milliseconds, a database in a second), dropped after the test.
    The test skips when there is no server (or no driver). The user data folder, where a store that is
    not a SQLite file keeps its run bundles, moves into the test's own folder (for the processes it
    starts too)."""
    admin, url = _postgres_admin()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "user-data"))
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def sqlite_store_url(tmp_path):
    """The URL of a fresh SQLite store file: for what only SQLite has (files, pragmas), or what is too slow
    to repeat on PostgreSQL."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The URL of a fresh, empty store: a SQLite file, then a PostgreSQL database (skipped without a
    server). A test taking it runs on both."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_store_url")
    return request.getfixturevalue("postgres_url")
