"""Shared fixtures: an app on a temp data dir, and a domain-worded driver for it (devpi's mapp, smaller)."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import peewee as pw
import pytest
from werkzeug.security import generate_password_hash

from pypilite import auth, create_app
from pypilite.cli import main
from pypilite.config import build_config
from pypilite.database import bind, database
from pypilite.models import File
from tests import memo_rule, postgres

# The S3-compatible server (moto's, on loopback) that the s3 backend's tests share.
pytest_plugins = ["tests.s3server"]

ADMIN = "admin"
# Nothing listens on the discard port: the default `pypi` proxy fails fast instead of reaching the internet.
CLOSED_UPSTREAM = "http://127.0.0.1:9/simple/"
TEST_REPOSITORIES = [
    {"name": "local", "repository_type": "hosted"},
    {"name": "pypi", "repository_type": "proxy", "remote_url": CLOSED_UPSTREAM, "remote_timeout": 2},
    {"name": "all", "repository_type": "group", "members": ["local", "pypi"], "upload_to": "local"},
]


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashes() -> Iterator[None]:
    """scrypt is slow on purpose, and every in-process index hashes its initial admin's password: in-process
    tests hash with one round of PBKDF2. A real start keeps scrypt (test_login_and_health checks it)."""
    cheap = functools.partial(generate_password_hash, method="pbkdf2:sha256:1")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(auth, "generate_password_hash", cheap)
        patch.setattr(auth, "_DUMMY_HASH", cheap("pypilite-dummy-password"))
        yield


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", choices=("sqlite", "postgresql"), default="sqlite",
                     help="the database in-process indexes run on: postgresql starts a throwaway cluster")


def pytest_configure(config: pytest.Config) -> None:
    global ENGINE
    ENGINE = config.getoption("--db")


# What `Index` runs on (--db); tests marked `sqlite_only` are skipped on anything else.
ENGINE = "sqlite"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if ENGINE != "sqlite" and item.get_closest_marker("sqlite_only") is not None:
        pytest.skip("SQLite only by nature")


# Under --db=postgresql: each data dir's own database, so a restart and the command line find what it holds.
_DATABASES: dict[Path, str] = {}


def database_url(data_dir: Path) -> str:
    key = data_dir.resolve()
    if key not in _DATABASES:
        _DATABASES[key] = postgres.fresh_database_url()
    return _DATABASES[key]


# Each test is marked by its directory (pytest.ini declares the marks): `pytest -m unit` is the quick loop.
_MARKS = {"unit": "unit", "integration": "integration", "browser": "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        mark = _MARKS.get(item.path.relative_to(Path(__file__).parent).parts[0])
        if mark is not None:
            item.add_marker(mark)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Index:
    """An app plus the verbs tests speak in."""

    def __init__(self, data_dir: Path, raw_config: dict | None = None) -> None:
        raw = {"storage": {"data_dir": str(data_dir)}, "repository": TEST_REPOSITORIES, **(raw_config or {})}
        if ENGINE == "postgresql" and "database" not in raw:
            raw["database"] = {"url": database_url(data_dir)}
        self.data_dir = data_dir
        self.app = create_app(build_config(raw, {}))
        memo_rule.hold(self.app)
        # peewee's models are bound to one database per process; an Index kept across tests rebinds to its own.
        self.database = database.obj
        self._client = self.app.test_client()
        self.admin_password = (data_dir / "initial-admin-password").read_text().strip()
        self.auth = basic(ADMIN, self.admin_password)

    @property
    def client(self):
        bind(self.database)
        return self._client

    def upload(self, filename: str, data: bytes, *, repo: str = "local", name: str | None = None,
               version: str | None = None, filetype: str | None = None, digests: dict[str, str] | None = None,
               auth: dict[str, str] | None = None, extra: dict[str, str] | None = None):
        if name is None or version is None:
            stem = filename.removesuffix(".tar.gz").removesuffix(".zip").removesuffix(".whl")
            parts = stem.split("-")
            name = name or parts[0]
            version = version or parts[1]
        if filetype is None:
            filetype = "bdist_wheel" if filename.endswith(".whl") else "sdist"
        form = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
                "filetype": filetype}
        form.update({"sha256_digest": hashlib.sha256(data).hexdigest()} if digests is None else digests)
        form.update(extra or {})
        form["content"] = (io.BytesIO(data), filename)
        return self.client.post(f"/{repo}/", data=form, headers=self.auth if auth is None else auth,
                                content_type="multipart/form-data")

    def get(self, url: str, accept: str | None = None, **kwargs):
        headers = kwargs.pop("headers", {})
        if accept is not None:
            headers["Accept"] = accept
        return self.client.get(url, headers=headers, **kwargs)

    def run(self, function, *args, **kwargs):
        """Call a service function against this index's database, as the CLI does."""
        bind(self.database)
        with database.connection_context():
            return function(*args, **kwargs)

    def file_rows(self) -> list[File]:
        bind(self.database)
        with database.connection_context():
            return list(File.select())

    def stored_blobs(self) -> list[Path]:
        return [p for p in (self.data_dir / "blobs").rglob("*") if p.is_file()]

    def held_locks(self) -> list[object]:
        """The named locks (pypilite/locks.py) someone holds: lock files on SQLite, advisory locks on PostgreSQL."""
        bind(self.database)
        if isinstance(self.database, pw.SqliteDatabase):
            locks = self.data_dir / "locks"
            return list(locks.iterdir()) if locks.is_dir() else []
        with database.connection_context():
            return list(database.execute_sql(
                "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())").fetchall())

    def temp_files(self) -> list[Path]:
        return list((self.data_dir / "tmp").iterdir())


@pytest.fixture
def index(tmp_path: Path) -> Index:
    return Index(tmp_path / "data")


@pytest.fixture(scope="module")
def module_index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    """One index for a module's read-only tests: creating users and uploading is the slow part."""
    return Index(tmp_path_factory.mktemp("index") / "data")


@pytest.fixture
def config(tmp_path: Path) -> str:
    """A config file naming a data dir of the test's own, for the command line."""
    path = tmp_path / "pypilite.toml"
    path.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
                    + (f'[database]\nurl = "{database_url(tmp_path / "data")}"\n' if ENGINE == "postgresql" else ""))
    (tmp_path / "data").mkdir()
    return str(path)


def call(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `python app.py ARGS` in-process: exit status, stdout, stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err
