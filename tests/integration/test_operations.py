"""Operations against the real server: a backup taken during a stream of uploads restores byte-identical,
metrics add up over gunicorn's workers, and imported files install with real pip."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.distfactory import wheel_bytes
from tests.integration.conftest import (
    ROOT,
    LiveServer,
    build,
    isolated_env,
    make_project,
    new_venv,
    run,
    start_server,
    stop_server,
)
from tests.integration.test_concurrency import post

UPLOADS_BEFORE_BACKUP = 5
UPLOADS_AFTER_BACKUP = 5
MAX_UPLOADS = 400  # the stream's bound, whatever happens


def app_command(live: LiveServer, tmp: Path, *args: str | Path, check: bool = True):
    """`python app.py …` on the live server's data dir, as an operator on the same box would run it."""
    config = next(live.data_dir.parent.glob("pypilite-*.toml"))
    env = isolated_env(tmp / "operator-home", PYPILITE_STORAGE_DATA_DIR=str(live.data_dir))
    return run([sys.executable, "app.py", *args, "--config", config], env=env, cwd=ROOT, check=check)


class UploadStream(threading.Thread):
    """Uploads new wheels one after another until told to stop (or MAX_UPLOADS); remembers what it sent."""

    def __init__(self, live: LiveServer) -> None:
        super().__init__(daemon=True)
        self.live = live
        self.sent: dict[str, bytes] = {}
        self.failures: list[str] = []
        self.stop_after: int | None = None
        self.started_enough = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        try:
            for i in range(MAX_UPLOADS):
                if self.stop_after is not None and len(self.sent) >= self.stop_after:
                    break
                filename, data = f"stream-{i}.0-py3-none-any.whl", wheel_bytes("stream", f"{i}.0")
                status = post(self.live, filename, data)
                if status != 200:
                    self.failures.append(f"{filename}: {status}")
                    break
                self.sent[filename] = data
                if len(self.sent) >= UPLOADS_BEFORE_BACKUP:
                    self.started_enough.set()
        finally:
            self.started_enough.set()
            self.done.set()


def test_a_backup_during_uploads_restores_byte_identical(tmp_path: Path) -> None:
    for name in ("source", "restored"):
        (tmp_path / name).mkdir()
    live = start_server("gunicorn", tmp_path / "source")
    restored = None
    try:
        stream = UploadStream(live)
        stream.start()
        assert stream.started_enough.wait(120) and not stream.failures, stream.failures
        dest = tmp_path / "backup"
        result = app_command(live, tmp_path, "backup", dest)
        stream.stop_after = len(stream.sent) + UPLOADS_AFTER_BACKUP
        assert stream.done.wait(120) and not stream.failures, stream.failures
        assert result.stdout.startswith("backed up the database")

        with sqlite3.connect(dest / "pypilite.db") as connection:
            listed = connection.execute("SELECT r.name, f.filename, f.sha256 FROM file f JOIN project p ON "
                                        "p.id = f.project_id JOIN repository r ON r.id = p.repository_id").fetchall()
        # The snapshot holds the uploads before it and none of those made after it finished (give or take the
        # one whose answer may still have been on its way when the backup ended).
        assert UPLOADS_BEFORE_BACKUP <= len(listed) <= len(stream.sent) - UPLOADS_AFTER_BACKUP + 1

        restored = start_server("gunicorn", tmp_path / "restored", data_dir=dest)
        for repository, filename, sha256 in listed:
            response = requests.get(f"{restored.url}/files/{repository}/{sha256}/{filename}",
                                    auth=("admin", restored.admin_password), timeout=30)
            assert response.status_code == 200, filename
            assert response.content == stream.sent[filename], filename
        page = requests.get(restored.simple("local") + "stream/", timeout=30)
        assert page.status_code == 200 and page.text.count("<a ") == len(listed)
        check = run([sys.executable, "app.py", "check"], cwd=ROOT,
                    env=isolated_env(tmp_path / "home", PYPILITE_STORAGE_DATA_DIR=str(dest)))
        assert f"checked {2 * len(listed)} blobs: 0 missing, 0 corrupt" in check.stdout  # each wheel + metadata
    finally:
        for server in (live, restored):
            if server is not None:
                stop_server(server.process)


def scrape(live: LiveServer) -> dict[tuple[str, frozenset], float]:
    response = requests.get(f"{live.url}/metrics", timeout=10)
    assert response.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


ROOT_INDEX = ("pypilite_http_requests_total",
              frozenset({"endpoint": "simple.root_index", "method": "GET", "status": "200"}.items()))


def per_worker(metrics_dir: Path) -> dict[str, float]:
    """Each worker's own count of root index requests, read from its file alone."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        if path.stat().st_size == 0:  # a worker creating its file this very moment: nothing counted in it yet
            continue
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if (sample.name, frozenset(sample.labels.items())) == ROOT_INDEX and sample.value:
                    counts[path.name] = sample.value
    return counts


def test_metrics_add_up_over_gunicorn_workers(tmp_path: Path, monkeypatch) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"left by an earlier server")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))  # start_server's environment inherits it
    live = start_server("gunicorn", tmp_path)
    try:
        assert not (metrics_dir / "counter_99999.db").exists()  # emptied at start
        sent = 0
        # New connections each time: the two workers take turns accepting, sooner or later both count.
        while sent < 400 and len(per_worker(metrics_dir)) < 2:
            assert requests.get(live.simple("local"), timeout=10).status_code == 200
            sent += 1
        counts = per_worker(metrics_dir)
        assert len(counts) == 2 and sum(counts.values()) == sent, counts
        for _ in range(5):  # whichever worker answers a scrape, it reports the sum of both
            assert scrape(live)[ROOT_INDEX] == sent

        # A worker killed (its file names it): the dead one's counts stay, and the worker gunicorn starts in its
        # place counts on in a file of its own.
        os.kill(int(min(counts).removeprefix("counter_").removesuffix(".db")), signal.SIGKILL)
        while sent < 800 and not set(per_worker(metrics_dir)) - set(counts):
            assert requests.get(live.simple("local"), timeout=10).status_code == 200
            sent += 1
        assert len(per_worker(metrics_dir)) == 3 and scrape(live)[ROOT_INDEX] == sent
    finally:
        stop_server(live.process)
    assert metrics_dir.is_dir()  # an operator's own directory is left in place


def test_import_into_a_live_server_then_pip_install(tmp_path: Path) -> None:
    (tmp_path / "server").mkdir()
    live = start_server("gunicorn", tmp_path / "server")
    try:
        env = isolated_env(tmp_path / "home")
        moving = tmp_path / "old-index" / "packages"
        build(make_project(tmp_path / "src", "moved-in", "1.0"), moving / "moved-in", env)
        build(make_project(tmp_path / "src", "moved-in", "1.1"), moving / "moved-in", env)
        (moving / "moved-in" / "moved_in-1.1.tar.gz.asc").write_text("-----BEGIN PGP SIGNATURE-----\n")
        (moving / "index.html").write_text("<html></html>\n")
        result = app_command(live, tmp_path, "import", moving, "--repo", "all")
        assert result.stdout.splitlines()[-1] == ("4 imported, 0 skipped as identical, 0 rejected, 2 ignored "
                                                  "(not distributions) into 'local'")
        again = app_command(live, tmp_path, "import", moving, "--repo", "all")
        assert again.stdout.startswith("0 imported, 4 skipped as identical")

        python = new_venv(tmp_path / "venv", env)
        run([python, "-m", "pip", "install", "--index-url", live.simple("local"), "moved-in"], env=env)
        shown = run([python, "-m", "pip", "show", "moved-in"], env=env).stdout
        assert "Version: 1.1" in shown

        audit = requests.get(f"{live.url}/api/v1/admin/audit?q=moved_in-1.1.tar.gz",
                             auth=("admin", live.admin_password), timeout=10).json()["items"]
        assert [(e["action"], e["actor"].split(":")[0], e["address"]) for e in audit] == [
            ("file.upload", "cli", "local")]
    finally:
        stop_server(live.process)


@pytest.mark.parametrize("command", [["backup", "{data}"], ["import", "{data}", "--repo", "pypi"]])
def test_refusals_from_the_shell_are_one_line(tmp_path: Path, command: list[str]) -> None:
    env = isolated_env(tmp_path / "home", PYPILITE_STORAGE_DATA_DIR=str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    run([sys.executable, "app.py", "repo", "list"], env=env, cwd=ROOT)  # the first start's admin is logged once
    args = [part.format(data=tmp_path / "data") for part in command]
    result = run([sys.executable, "app.py", *args], env=env, cwd=ROOT, check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and result.stderr.startswith("pypilite: ")
    assert "Traceback" not in result.stderr + result.stdout
