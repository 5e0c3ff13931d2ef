"""Upstream indexes for proxy tests, on loopback: a static PEP 503 tree served from a directory, and one that
speaks PEP 691 JSON with ETags; either speaks API 1.4 (PEP 792 status, PEP 708 tracks and
alternate-locations, PEP 740 provenance) for the projects given in `said`. Both count what they are asked,
can serve corrupted bytes, can die in the middle of a file, and can be stopped and started again on the same
port. And the hostile ones: pages that name any URL and declare any hash, redirects, answers that trickle,
lie about their length, carry huge headers or come gzip-compressed."""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.distfactory import metadata_text, wheel_bytes


@dataclass
class Dist:
    project: str
    filename: str
    data: bytes
    metadata: bytes | None = None
    requires_python: str = ""
    url: str = ""  # what pages link to; empty: the file in this upstream's files/
    declared_sha256: str = ""  # what pages say the file hashes to; empty: what it does
    declared_metadata_sha256: str = ""
    provenance: bytes | None = None  # PEP 740: served at <file>.provenance and named by the pages
    provenance_url: str = ""  # what pages name as the provenance instead, if set
    upload_time: str | None = "2024-05-06T07:08:09.123456Z"  # what the JSON API says (PEP 700); None: nothing

    @property
    def provenance_link(self) -> str | None:
        if self.provenance_url:
            return self.provenance_url
        return f"{self.link}.provenance" if self.provenance is not None else None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def link(self) -> str:
        return self.url or f"../../files/{self.filename}"

    @property
    def page_sha256(self) -> str:
        return self.declared_sha256 or self.sha256

    @property
    def page_metadata_sha256(self) -> str | None:
        if self.declared_metadata_sha256:
            return self.declared_metadata_sha256
        return hashlib.sha256(self.metadata).hexdigest() if self.metadata is not None else None


def wheel(project: str, version: str, requires: tuple[str, ...] = (), requires_python: str = "",
          license_expression: str = "", upload_time: str | None = Dist.upload_time) -> Dist:
    metadata = metadata_text(project, version, requires_python, requires, license_expression)
    module = project.replace("-", "_")
    return Dist(project, f"{module}-{version}-py3-none-any.whl", wheel_bytes(project, version, metadata=metadata),
                metadata.encode(), requires_python, upload_time=upload_time)


@dataclass
class Log:
    """What the upstream was asked: every request's path and headers, in order."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append((path, headers))

    def count(self, suffix: str) -> int:
        return sum(1 for path, _ in self.requests if path.endswith(suffix))

    def conditional(self, suffix: str) -> list[dict[str, str]]:
        return [h for path, h in self.requests if path.endswith(suffix)
                and ("If-None-Match" in h or "If-Modified-Since" in h)]


class Upstream:
    """A served index: `dists` by project, `corrupt` filenames answered with other bytes."""

    def __init__(self, root: Path, dists: list[Dist], json_api: bool, host: str = "127.0.0.1",
                 said: dict[str, dict] | None = None) -> None:
        self.root = root
        self.dists = dists
        # project -> what its page says besides files: {"status", "reason", "tracks", "alternate-locations"}
        self.said = said or {}
        self.json_api = json_api
        self.host = host
        self.corrupt: set[str] = set()
        self.fail_status: int | None = None  # answer every request with this status
        self.delay = 0.0  # seconds to wait before answering
        # Filenames answered with their headers and half their bytes, then `hold` seconds of silence, then a
        # connection reset: what a client sees of an upstream process killed mid-body. `half_sent` is set then.
        self.die_mid_body: set[str] = set()
        self.hold = 0.0
        self.half_sent = threading.Event()
        self.redirects: dict[str, str] = {}  # request path -> Location of a 302
        self.drip: set[str] = set()  # request paths whose answer comes one byte every `drip_seconds`
        self.drip_seconds = 0.2
        self.gzip_pages = False  # JSON pages sent with Content-Encoding: gzip
        self.headers: dict[str, str] = {}  # added to every answer of the JSON API and of files/
        self.claimed_length: dict[str, int] = {}  # filename -> the Content-Length its answer claims
        self.log = Log()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self._write_tree()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/simple/"

    def _write_tree(self) -> None:
        """The static tree: simple/<project>/index.html with #sha256 links, files/ and .metadata files."""
        files = self.root / "files"
        files.mkdir(parents=True, exist_ok=True)
        for project in sorted({d.project for d in self.dists}):
            anchors = []
            for dist in (d for d in self.dists if d.project == project):
                (files / dist.filename).write_bytes(dist.data)
                attrs = ""
                if dist.requires_python:
                    attrs += f' data-requires-python="{html.escape(dist.requires_python)}"'
                if dist.metadata is not None:
                    (files / f"{dist.filename}.metadata").write_bytes(dist.metadata)
                if dist.page_metadata_sha256 is not None:
                    attrs += f' data-core-metadata="sha256={dist.page_metadata_sha256}"'
                if dist.provenance is not None:
                    (files / f"{dist.filename}.provenance").write_bytes(dist.provenance)
                if dist.provenance_link is not None:
                    attrs += f' data-provenance="{html.escape(dist.provenance_link)}"'
                anchors.append(f'<a href="{html.escape(dist.link)}#sha256={dist.page_sha256}"{attrs}>'
                               f"{html.escape(dist.filename)}</a><br>")
            page = self.root / "simple" / project / "index.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text("<!DOCTYPE html><html><head>" + self._metas(project) + "</head><body>\n"
                            + "\n".join(anchors) + "\n</body></html>\n")

    def _metas(self, project: str) -> str:
        said = self.said.get(project)
        if said is None:
            return ""
        metas = [("pypi:repository-version", "1.4")]
        metas += [(name, said[key]) for key, name in (("status", "pypi:project-status"),
                                                      ("reason", "pypi:project-status-reason")) if key in said]
        metas += [(f"pypi:{key}", url) for key in ("tracks", "alternate-locations") for url in said.get(key, ())]
        return "".join(f'<meta name="{name}" content="{html.escape(value)}">' for name, value in metas)

    def json_page(self, project: str) -> bytes | None:
        dists = [d for d in self.dists if d.project == project]
        if not dists:
            return None
        page = {"meta": {"api-version": "1.1"}, "name": project, "versions": [], "files": [{
            "filename": d.filename, "url": d.link, "hashes": {"sha256": d.page_sha256},
            "requires-python": d.requires_python or None, "size": len(d.data),
            **({"upload-time": d.upload_time} if d.upload_time is not None else {}), "yanked": False,
            "core-metadata": {"sha256": d.page_metadata_sha256} if d.page_metadata_sha256 else False,
            "provenance": d.provenance_link,
        } for d in dists]}
        said = self.said.get(project)
        if said is not None:
            page["meta"] = {"api-version": "1.4", "tracks": said.get("tracks", [])}
            page["alternate-locations"] = said.get("alternate-locations", [])
            if "status" in said:
                page["project-status"] = {key: said[key] for key in ("status", "reason") if key in said}
        return json.dumps(page).encode()

    def start(self) -> Upstream:
        handler = partial(_Handler, self, directory=str(self.root))
        self._server = _QuietServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client (pypilite) hanging up mid-answer is part of what the tests do, not an error."""


class _Handler(SimpleHTTPRequestHandler):
    # HTTP/1.0 (the default) closes every connection, so stop() really makes the upstream unreachable
    # instead of leaving kept-alive connections answering.

    def __init__(self, upstream: Upstream, *args, **kwargs) -> None:
        self.upstream = upstream
        super().__init__(*args, **kwargs)

    def log_message(self, *args) -> None:  # quiet: tests read the Log instead
        pass

    def do_GET(self) -> None:
        self.upstream.log.add(self.path, dict(self.headers.items()))
        time.sleep(self.upstream.delay)
        if self.upstream.fail_status is not None:
            return self._send(self.upstream.fail_status, b"upstream trouble", "text/plain")
        if self.path in self.upstream.redirects:
            self.send_response(302)
            self.send_header("Location", self.upstream.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        name = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/files/") and name in self.upstream.corrupt:
            return self._send(200, b"not the bytes that were declared" * 100, "application/octet-stream")
        if self.path.startswith("/files/") and name in self.upstream.die_mid_body:
            return self._die_mid_body((self.upstream.root / "files" / name).read_bytes())
        if self.path.startswith("/files/") and (self.upstream.root / "files" / name).is_file():
            return self._send(200, (self.upstream.root / "files" / name).read_bytes(), "application/octet-stream")
        parts = self.path.strip("/").split("/")
        if self.upstream.json_api and len(parts) == 2 and parts[0] == "simple":
            return self._json(parts[1])
        return super().do_GET()

    def _json(self, project: str) -> None:
        body = self.upstream.json_page(project)
        if body is None:
            return self._send(404, b"not found", "text/plain")
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        headers = {"ETag": etag}
        if self.upstream.gzip_pages:
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        return self._send(200, body, "application/vnd.pypi.simple.v1+json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        name = self.path.rsplit("/", 1)[-1]
        self.send_header("Content-Length", str(self.upstream.claimed_length.get(name, len(body))))
        for header, value in {**self.upstream.headers, **(headers or {})}.items():
            self.send_header(header, value)
        self.end_headers()
        if self.path not in self.upstream.drip:
            self.wfile.write(body)
            return
        for i in range(len(body)):
            self.wfile.write(body[i:i + 1])
            self.wfile.flush()
            time.sleep(self.upstream.drip_seconds)

    def _die_mid_body(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:len(data) // 2])
        self.wfile.flush()
        self.upstream.half_sent.set()
        time.sleep(self.upstream.hold)
        # SO_LINGER 0: close() resets the connection instead of finishing it, as a killed process's would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True
