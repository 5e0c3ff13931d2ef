"""Another site's page against a browser logged in to pypilite, in headless Chromium against gunicorn: pages
served from a second loopback port submit forms here (an upload to a repository and to the root, an empty
yank and unyank, a JSON-looking text/plain body to the API, a login, and the UI's own forms) and fetch with
the browser's credentials; each is refused and audited, and nothing is stored or changed. Its link to /login
only leads home."""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.browser.test_ui import new_page, upload
from tests.distfactory import wheel_bytes
from tests.integration.conftest import LiveServer, start_server, stop_server

ACTION = "request.cross_site"
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server("gunicorn", tmp_path_factory.mktemp("cross-site-live"),
                          repositories=[{"name": "local", "repository_type": "hosted"}],
                          settings={"PYPILITE_SERVER_DEFAULT_REPOSITORY": "local"}, workers=2)
    for version in ("0.9", "1.0"):
        upload(server, "local", f"victim-{version}-py3-none-any.whl", wheel_bytes("victim", version))
    response = requests.post(f"{server.url}/api/v1/repos/local/projects/victim/0.9/yank", json={"reason": "old"},
                             auth=("admin", server.admin_password), timeout=10)
    assert response.status_code == 200, response.text
    yield server
    stop_server(server.process)


def form(action: str, fields: dict[str, str], enctype: str = "application/x-www-form-urlencoded",
         file: tuple[str, bytes] | None = None) -> str:
    """A page that submits a form to `action` as soon as it loads; `file` goes into its file input, as a
    script can put it there."""
    inputs = "".join(f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
                     for name, value in fields.items())
    attach = ""
    if file is not None:
        inputs += '<input type="file" name="content" id="content">'
        attach = (f'const bytes = Uint8Array.from(atob("{base64.b64encode(file[1]).decode()}"), c => c.charCodeAt(0));'
                  f'const files = new DataTransfer(); files.items.add(new File([bytes], "{file[0]}"));'
                  'document.getElementById("content").files = files.files;')
    return (f'<!DOCTYPE html><title>a page elsewhere</title><form id="f" method="post" enctype="{enctype}" '
            f'action="{html.escape(action)}">{inputs}</form><script>{attach}document.getElementById("f").submit();'
            "</script>")


def script(code: str) -> str:
    return f"<!DOCTYPE html><title>a page elsewhere</title><script>{code}</script>"


def attacks(live: LiveServer) -> dict[str, tuple[str, str, str]]:
    """name: (the page, the method and path of the request it makes here)."""
    def upload_form(action: str, version: str) -> str:
        data = wheel_bytes("victim", version)
        fields = {":action": "file_upload", "protocol_version": "1", "name": "victim", "version": version,
                  "filetype": "bdist_wheel", "pyversion": "py3", "sha256_digest": hashlib.sha256(data).hexdigest()}
        return form(action, fields, "multipart/form-data", (f"victim-{version}-py3-none-any.whl", data))

    release = "/api/v1/repos/local/projects/victim"
    # A text/plain form sends name=value: this name and value make the body read as a JSON object.
    json_name = '{"name": "mallory", "password": "mallory-password", "admin": true, "pad": "'
    return {
        "upload-to-repository": (upload_form(f"{live.url}/local/", "2.0"), "POST", "/local/"),
        "upload-to-root": (upload_form(f"{live.url}/", "2.1"), "POST", "/"),
        "yank": (form(f"{live.url}{release}/1.0/yank", {}), "POST", f"{release}/1.0/yank"),
        "unyank": (form(f"{live.url}{release}/0.9/unyank", {}), "POST", f"{release}/0.9/unyank"),
        "api-text-plain": (form(f"{live.url}/api/v1/users", {json_name: '"}'}, "text/plain"),
                           "POST", "/api/v1/users"),
        "login": (form(f"{live.url}/login", {"next": "/"}), "POST", "/login"),
        "ui-yank": (form(f"{live.url}/ui/local/victim/-/yank", {"version": "1.0", "reason": "x"}), "POST",
                    "/ui/local/victim/-/yank"),
        "ui-delete": (form(f"{live.url}/ui/local/victim/-/delete", {"filename": "victim-1.0-py3-none-any.whl",
                                                                     "confirm": "on"}),
                      "POST", "/ui/local/victim/-/delete"),
        "ui-grant": (form(f"{live.url}/ui/local/-/access", {"user": "admin", "level": "read"}), "POST",
                     "/ui/local/-/access"),
        "ui-token": (form(f"{live.url}/ui/-/account/tokens", {}), "POST", "/ui/-/account/tokens"),
        "ui-password": (form(f"{live.url}/ui/-/account/password", {"old_password": "x", "password": "taken-over-1",
                                                                    "confirm": "taken-over-1"}),
                        "POST", "/ui/-/account/password"),
        "ui-logout": (form(f"{live.url}/ui/-/logout", {}), "POST", "/ui/-/logout"),
        "fetch-yank": (script(f'fetch("{live.url}{release}/1.0/yank", {{method: "POST", mode: "no-cors", '
                              'credentials: "include"}).then(() => document.title = "sent");'),
                       "POST", f"{release}/1.0/yank"),
    }


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Another origin: a plain HTTP server on a second loopback port; returns its URL and the folder it serves."""
    folder = tmp_path_factory.mktemp("elsewhere")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


def state(live: LiveServer) -> dict:
    auth = ("admin", live.admin_password)
    events = requests.get(f"{live.url}/api/v1/admin/audit?limit=1000", auth=auth, timeout=10).json()["items"]
    return {
        "page": requests.get(f"{live.url}/local/simple/victim/", headers=JSON, timeout=10).json()["files"],
        "project": requests.get(f"{live.url}/api/v1/repos/local/projects/victim", auth=auth, timeout=10).json(),
        "users": requests.get(f"{live.url}/api/v1/users", auth=auth, timeout=10).json(),
        "changes": [e for e in events if e["action"] not in (ACTION, "login.failed")],
    }


def refusals(live: LiveServer) -> list[dict]:
    return requests.get(f"{live.url}/api/v1/admin/audit", params={"q": ACTION, "limit": 1000},
                        auth=("admin", live.admin_password), timeout=10).json()["items"]


def logged_in_page(browser, live: LiveServer):
    """A browser that logged in at /login, as a person does: its Basic credentials go with every request here."""
    page = new_page(browser, http_credentials={"username": "admin", "password": live.admin_password,
                                               "origin": live.url})
    page.goto(f"{live.url}/login")
    assert page.url == f"{live.url}/" and page.locator(".who").inner_text().strip() == "admin"
    return page


def test_another_sites_forms_change_nothing(live, elsewhere, browser, screenshots) -> None:
    origin, folder = elsewhere
    page = logged_in_page(browser, live)
    before = state(live)
    expected = attacks(live)
    for name, (body, method, path) in expected.items():
        (folder / f"{name}.html").write_text(body)
        with page.expect_response(lambda r, path=path: r.url == f"{live.url}{path}") as answer:
            page.goto(f"{origin}/{name}.html")
        assert answer.value.status == 403, (name, answer.value.text())
        assert answer.value.request.method == method
        page.wait_for_load_state()
        page.screenshot(path=screenshots / f"cross-site-{name}.png", full_page=True)
    assert state(live) == before
    audited = refusals(live)[:len(expected)]
    assert sorted((e["detail"]["method"], e["resource"]) for e in audited) == sorted(
        (method, path) for _body, method, path in expected.values())
    for event in audited:  # the browser sent the credentials it logged in with, and they did not count
        assert event["actor"] == "admin" and event["detail"]["origin"] == origin
        assert event["detail"]["sec_fetch_site"] == "same-site"


def test_another_sites_link_to_login_only_leads_home(live, elsewhere, browser, screenshots) -> None:
    origin, folder = elsewhere
    page = logged_in_page(browser, live)
    (folder / "login-link.html").write_text(script(f'location.href = "{live.url}/login?next=/local/simple/";'))
    with page.expect_response(lambda r: r.url.startswith(f"{live.url}/login")) as answer:
        page.goto(f"{origin}/login-link.html")
    assert answer.value.status == 302 and answer.value.headers["location"] == "./"
    page.wait_for_url(f"{live.url}/")
    page.screenshot(path=screenshots / "cross-site-login-link.png", full_page=True)
