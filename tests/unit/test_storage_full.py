"""A full disk in-process: the file system refuses bytes (ENOSPC, EDQUOT, EFBIG) or SQLite cannot grow. The
answer is a one-line 507, nothing is half-stored, and the next request after space is freed succeeds."""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import peewee as pw
import pytest

from pypilite import audit, maintenance, storage
from pypilite.errors import InsufficientStorage
from pypilite.repositories.proxy_files import READ_AHEAD
from pypilite.upstream import CHUNK
from tests.conftest import Index
from tests.distfactory import wheel_bytes
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"


class _Disk:
    """The file system under the blob store, with `room` bytes left (None: plenty); `fail_on` says which
    call refuses them."""

    def __init__(self, room: int | None = None, error: int = errno.ENOSPC, fail_on: str = "write") -> None:
        self.room = room
        self.error = error
        self.fail_on = fail_on
        self.used = 0

    def refuse(self) -> None:
        raise OSError(self.error, os.strerror(self.error))


class _FillingFile:
    """A temp blob's file on `disk`: writes past the room left fail as the kernel's would."""

    def __init__(self, real: Any, disk: _Disk) -> None:
        self._real = real
        self._disk = disk

    def write(self, data: bytes) -> int:
        if self._disk.fail_on == "write" and self._disk.room is not None \
                and self._disk.used + len(data) > self._disk.room:
            self._disk.refuse()
        self._disk.used += len(data)
        return self._real.write(data)

    def flush(self) -> None:
        if self._disk.fail_on == "flush" and self._disk.room is not None:
            self._disk.refuse()
        self._real.flush()

    def seek(self, *args: int) -> int:  # a buffered file flushes before it seeks
        if self._disk.fail_on == "seek" and self._disk.room is not None:
            self._disk.refuse()
        return self._real.seek(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Disk]:
    state = _Disk()
    original = storage.TempBlob.__init__

    def init(self: storage.TempBlob, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._file = _FillingFile(self._file, state)

    monkeypatch.setattr(storage.TempBlob, "__init__", init)
    yield state


def _listed(index: Index, project: str) -> list[str]:
    response = index.get(f"/local/simple/{project}/", accept=JSON)
    return [f["filename"] for f in response.json["files"]] if response.status_code == 200 else []


def _assert_refused_with_507(response: Any) -> None:
    assert response.status_code == 507
    assert response.content_type == "text/plain; charset=utf-8"
    body = response.get_data(as_text=True)
    assert body.startswith("Insufficient storage: ") and body.count("\n") == 1
    assert response.status == f"507 {body.strip()}"  # twine prints the reason phrase


@pytest.mark.parametrize("error, fail_on", [(errno.ENOSPC, "write"), (errno.EDQUOT, "write"),
                                            (errno.EFBIG, "write"), (errno.ENOSPC, "flush"),
                                            (errno.ENOSPC, "seek")])
def test_upload_to_a_full_disk_is_507_and_keeps_nothing(index: Index, disk: _Disk, error: int, fail_on: str) -> None:
    earlier = wheel_bytes("earlier", "1.0")
    assert index.upload("earlier-1.0-py3-none-any.whl", earlier).status_code == 200
    disk.room, disk.error, disk.fail_on, disk.used = 1000, error, fail_on, 0
    big = wheel_bytes("big", "1.0", payload=os.urandom(64 * 1024))

    response = index.upload("big-1.0-py3-none-any.whl", big)

    _assert_refused_with_507(response)
    assert os.strerror(error) in response.get_data(as_text=True)
    assert index.temp_files() == []
    assert _listed(index, "big") == [] and [r.filename for r in index.file_rows()] == ["earlier-1.0-py3-none-any.whl"]
    [url] = [f["url"] for f in index.get("/local/simple/earlier/", accept=JSON).json["files"]]
    assert index.get("/" + url.lstrip("./")).data == earlier
    assert index.run(maintenance.check, index.app.extensions["pypilite"].blobs).clean

    disk.room = None  # space freed
    assert index.upload("big-1.0-py3-none-any.whl", big).status_code == 200
    assert _listed(index, "big") == ["big-1.0-py3-none-any.whl"]


def _sqlite_full_error() -> pw.OperationalError:
    """The error SQLite really raises when the database cannot grow, wrapped as peewee wraps it."""
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("CREATE TABLE t (x BLOB)")
        connection.execute("PRAGMA max_page_count = 2")
        connection.execute("INSERT INTO t VALUES (zeroblob(100000))")
    except sqlite3.OperationalError as exc:
        assert exc.sqlite_errorcode == sqlite3.SQLITE_FULL
        return pw.OperationalError(exc, *exc.args)
    finally:
        connection.close()
    raise AssertionError("SQLite accepted a row larger than its page limit")


def test_a_database_that_cannot_grow_is_507_and_stores_no_row(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    full = _sqlite_full_error()

    def record(*args: Any, **kwargs: Any) -> None:
        raise full

    monkeypatch.setattr(audit, "record", record)
    data = wheel_bytes("late", "1.0")
    _assert_refused_with_507(index.upload("late-1.0-py3-none-any.whl", data))
    assert index.file_rows() == [] and index.temp_files() == []
    assert index.run(maintenance.check, index.app.extensions["pypilite"].blobs).clean  # at most an unused blob
    monkeypatch.undo()
    assert index.upload("late-1.0-py3-none-any.whl", data).status_code == 200


def test_other_database_errors_stay_errors(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    def record(*args: Any, **kwargs: Any) -> None:
        raise pw.OperationalError(sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(audit, "record", record)
    assert index.upload("late-1.0-py3-none-any.whl", wheel_bytes("late", "1.0")).status_code == 500


def test_other_os_errors_are_not_disguised_as_a_full_disk(tmp_path) -> None:
    with pytest.raises(PermissionError):
        with storage.out_of_space_is_507():
            raise PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(InsufficientStorage):
        with storage.out_of_space_is_507():
            raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("extra", [300 * 1024, 2 * READ_AHEAD])
def test_a_proxied_download_onto_a_full_disk_fails_and_keeps_nothing(tmp_path, disk: _Disk, extra: int) -> None:
    dist = wheel("demo", "1.0")
    dist.data += os.urandom(extra)  # several chunks; the declared hash is of these bytes
    upstream = Upstream(tmp_path / "upstream", [dist], json_api=True).start()
    try:
        index = Index(tmp_path / "data", {"repository": [
            {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 2}]})
        [file] = index.get("/pypi/simple/demo/", accept=JSON).json["files"]
        url = "/" + file["url"].lstrip("./")
        # Past the read-ahead (which may end a socket read beyond READ_AHEAD) for the large file.
        disk.room = 100 * 1024 if extra < READ_AHEAD else READ_AHEAD + CHUNK + 100 * 1024

        if extra < READ_AHEAD:  # read before the answer starts: the answer says so
            assert index.get(url).status_code == 507
        else:
            with pytest.raises(InsufficientStorage):  # the body breaks off: the client's download fails
                index.get(url).get_data()

        blobs = index.app.extensions["pypilite"].blobs
        assert not blobs.path(dist.sha256).exists() and index.temp_files() == []
        assert index.held_locks() == []
        disk.room = None
        again = index.get(url)
        assert again.status_code == 200 and hashlib.sha256(again.data).hexdigest() == dist.sha256
        assert upstream.log.count(dist.filename) == 2
    finally:
        upstream.stop()
