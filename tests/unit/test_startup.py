"""Start-up: the data dir is prepared once, the first admin is born, the schema is versioned."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pypilite import StartupError, create_app, migrations, models
from pypilite.config import build_config
from pypilite.database import database
from pypilite.models import User, set_meta
from pypilite.users import initial_password
from tests.conftest import Index
from tests.distfactory import wheel_bytes

ROOT = Path(__file__).resolve().parents[2]


def app_for(data_dir: Path, **raw):
    return create_app(build_config({"storage": {"data_dir": str(data_dir)}, **raw}, {}))


def test_first_start_creates_admin_with_a_private_password_file(tmp_path: Path, caplog) -> None:
    app_for(tmp_path / "data")
    path = tmp_path / "data" / "initial-admin-password"
    password = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(password) >= 20 and password in caplog.text
    with database.connection_context():
        admin = User.get(User.name == "admin")
    assert admin.admin


def test_the_initial_password_survives_a_command_line_and_a_url() -> None:
    """twine -p -abc... reads a password starting with "-" as an option: CI runs once failed that way."""
    passwords = {initial_password() for _ in range(500)}
    assert len(passwords) == 500
    assert all(p.isascii() and p.isalnum() and len(p) == 24 for p in passwords)


def test_second_start_keeps_the_admin(tmp_path: Path) -> None:
    app_for(tmp_path / "data")
    first = (tmp_path / "data" / "initial-admin-password").read_text()
    app_for(tmp_path / "data")
    assert (tmp_path / "data" / "initial-admin-password").read_text() == first
    with database.connection_context():
        assert User.select().count() == 1


def test_everything_lives_in_the_data_dir(tmp_path: Path) -> None:
    app_for(tmp_path / "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert {"pypilite.db", "blobs", "tmp", "initial-admin-password"} <= {p.name for p in (tmp_path / "data").iterdir()}


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    app_for(tmp_path / "data")
    with database.connection_context():
        assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        assert database.execute_sql("PRAGMA busy_timeout").fetchone()[0] > 0


def test_schema_version_is_recorded(tmp_path: Path) -> None:
    app_for(tmp_path / "data")
    with database.connection_context():
        assert migrations.schema_version() == migrations.SCHEMA_VERSION >= 1


def test_a_newer_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    app_for(tmp_path / "data")
    with database.connection_context():
        set_meta("schema_version", str(migrations.SCHEMA_VERSION + 1))
    with pytest.raises(StartupError, match="newer than this pypilite") as caught:
        app_for(tmp_path / "data")
    assert "\n" not in str(caught.value)


def test_migrations_keep_existing_data(tmp_path: Path) -> None:
    from tests.distfactory import wheel_bytes
    index = Index(tmp_path / "data")
    assert index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0")).status_code == 200
    again = Index(tmp_path / "data")
    assert [row.filename for row in again.file_rows()] == ["demo-1.0-py3-none-any.whl"]


def test_configured_group_with_a_missing_member_is_refused(tmp_path: Path) -> None:
    raw = {"repository": [{"name": "g", "repository_type": "group", "members": ["ghost"]}],
           "server": {"default_repository": "g"}}
    with pytest.raises(StartupError, match="member 'ghost' does not exist"):
        app_for(tmp_path / "data", **raw)


def test_configured_groups_in_a_cycle_are_refused(tmp_path: Path) -> None:
    raw = {"repository": [{"name": "a", "repository_type": "group", "members": ["b"]},
                          {"name": "b", "repository_type": "group", "members": ["a"]}]}
    with pytest.raises(StartupError, match="form a cycle"):
        app_for(tmp_path / "data", **raw)


def test_unusable_data_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StartupError, match="data dir"):
        app_for(blocker / "data")


def test_health_reports_the_failing_part(index: Index) -> None:
    assert index.client.get("/health").json["status"] == "ok"
    (index.data_dir / "tmp").rename(index.data_dir / "tmp-gone")
    response = index.client.get("/health")
    assert response.status_code == 503
    assert response.json["failing"] == ["storage"]


def test_a_request_that_dies_inside_a_transaction_does_not_hold_the_next_ones(index: Index) -> None:
    """A sync worker keeps its connection between requests; a transaction a failure left open must not
    stay open with it, holding the write lock against every other worker."""
    def abandon() -> str:
        database.begin()
        models.Meta.insert(key="abandoned", value="1").execute()
        raise RuntimeError("a bug, halfway through a write")

    index.app.add_url_rule("/test-abandon", view_func=abandon)
    index.app.testing = False  # answer 500 like production, instead of raising into the test
    assert index.get("/test-abandon").status_code == 500
    assert index.upload("after-1.0-py3-none-any.whl", wheel_bytes("after", "1.0")).status_code == 200
    assert index.run(lambda: models.Meta.get_or_none(models.Meta.key == "abandoned")) is None



def test_a_port_open_past_the_reverse_proxy_is_warned_about(tmp_path: Path, caplog) -> None:
    app_for(tmp_path / "a", server={"x_accel_redirect": "/_pypilite_blobs/", "host": "0.0.0.0"})
    assert "clients can reach pypilite past the reverse proxy" in caplog.text
    caplog.clear()
    app_for(tmp_path / "b", server={"x_accel_redirect": "/_pypilite_blobs/", "host": "127.0.0.1"})
    app_for(tmp_path / "c", server={"host": "0.0.0.0"})
    assert "past the reverse proxy" not in caplog.text



@pytest.mark.parametrize("entry", [
    "sys.argv = ['app.py', '--help']; runpy.run_path('app.py', run_name='__main__')",
    "from pypilite.cli import main; main(['--help'])",  # what the installed `pypilite` script runs
])
def test_an_older_python_is_one_line(entry: str) -> None:
    """Python before 3.11 (faked here: the machine has none) is told so in one line, before anything that
    needs 3.11 is imported."""
    fake = f"import runpy, sys; sys.version_info = (3, 10, 12, 'final', 0); {entry}"
    result = subprocess.run([sys.executable, "-c", fake], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "pypilite: needs Python 3.11 or newer; this is Python 3.10\n"
