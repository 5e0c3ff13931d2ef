"""The UI's self-service in headless Chromium against the live server, with JavaScript off (plain forms must
do): a user's Account page (a token made, shown once, used and revoked; a wrong old password refused; the
password changed; logging out), an uploader's yank, unyank and delete on a release page, and a repository
admin's Access section. Screenshots land where test_ui.py's do."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError

from tests.browser.test_ui import new_page, upload
from tests.distfactory import wheel_bytes
from tests.integration.conftest import LiveServer, start_server, stop_server

REPOSITORIES = [{"name": "local", "repository_type": "hosted"}]
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server("app", tmp_path_factory.mktemp("self-service-live"), repositories=REPOSITORIES)
    auth = ("admin", server.admin_password)
    for name in ("alice", "bob", "carol"):
        response = requests.post(f"{server.url}/api/v1/users", json={"name": name, "password": f"{name}-password"},
                                 auth=auth, timeout=10)
        assert response.status_code == 201, response.text
    response = requests.put(f"{server.url}/api/v1/repos/local/permissions/alice", json={"level": "admin"},
                            auth=auth, timeout=10)
    assert response.status_code == 201, response.text
    for version in ("1.0", "2.0"):
        upload(server, "local", f"shelf-{version}-py3-none-any.whl", wheel_bytes("shelf", version))
    yield server
    stop_server(server.process)


def signed_in(browser, live: LiveServer, name: str, password: str | None = None):
    """A browser with JavaScript off that logged in at /login, as a person does."""
    page = new_page(browser, java_script_enabled=False,
                    http_credentials={"username": name, "password": password or f"{name}-password",
                                      "origin": live.url})
    page.goto(f"{live.url}/login")
    assert page.locator(".who").inner_text().strip() == name
    return page


def simple_files(live: LiveServer) -> dict[str, dict]:
    page = requests.get(f"{live.url}/local/simple/shelf/", headers=JSON, timeout=10).json()
    return {f["filename"]: f for f in page["files"]}


def test_a_token_is_made_shown_once_used_and_revoked(live, browser, screenshots) -> None:
    page = signed_in(browser, live, "carol")
    page.click(".who a")
    page.wait_for_url(f"{live.url}/ui/-/account")
    page.screenshot(path=screenshots / "account.png", full_page=True)
    page.check("input[name=read_only]")
    page.check("input[name=repos][value=local]")
    page.fill("input[name=expires_days]", "30")
    page.click("text=Create token")
    secret = page.locator("#secret").inner_text().strip()
    assert re.fullmatch(r"pypl_[A-Za-z0-9_-]+", secret)
    assert "shown this once" in page.locator("#new-token").inner_text()
    page.screenshot(path=screenshots / "account-token-created.png", full_page=True)
    assert requests.get(f"{live.url}/local/simple/", auth=("__token__", secret), timeout=10).status_code == 200

    page.goto(f"{live.url}/ui/-/account")
    assert secret not in page.content()
    row = page.locator("table.tokens tbody tr")
    assert row.count() == 1 and "local" in row.inner_text() and "read-only" in row.inner_text()
    row.locator("button:text('Revoke')").click()
    page.wait_for_url(f"{live.url}/ui/-/account?done=revoked")
    assert "Token revoked" in page.locator(".notice").inner_text()
    assert "revoked" in page.locator("table.tokens tbody tr").inner_text()
    page.screenshot(path=screenshots / "account-token-revoked.png", full_page=True)
    assert requests.get(f"{live.url}/local/simple/", auth=("__token__", secret), timeout=10).status_code == 401


def test_the_password_is_changed_with_the_old_one_and_logging_out_drops_the_login(live, browser, screenshots) -> None:
    page = signed_in(browser, live, "bob")
    page.goto(f"{live.url}/ui/-/account")
    for name, value in (("old_password", "not-my-password"), ("password", "bob-password-2"),
                        ("confirm", "bob-password-2")):
        page.fill(f"input[name={name}]", value)
    page.click("#password button")
    assert page.locator(".form-error").inner_text() == "the old password is wrong"
    page.screenshot(path=screenshots / "account-password-refused.png", full_page=True)

    page.fill("input[name=old_password]", "bob-password")
    page.fill("input[name=password]", "bob-password-2")
    page.fill("input[name=confirm]", "bob-password-2")
    # The browser's stored password is the old one now: the page it is sent to asks for the new one.
    with page.expect_response(lambda r: r.url.endswith("/ui/-/account/password")) as answer:
        try:
            page.click("#password button")
        except PlaywrightError:
            pass
    assert answer.value.status == 303
    fresh = signed_in(browser, live, "bob", "bob-password-2")
    fresh.goto(f"{live.url}/ui/-/account")
    with fresh.expect_response(lambda r: r.url.endswith("/ui/-/logout")) as logout:
        try:
            fresh.click("#logout button")
        except PlaywrightError:
            pass
    assert logout.value.status == 401 and logout.value.headers["www-authenticate"] == 'Basic realm="pypilite"'
    assert "Logged out" in logout.value.text()


def test_an_uploader_yanks_unyanks_and_deletes_without_javascript(live, browser, screenshots) -> None:
    page = signed_in(browser, live, "alice")
    page.goto(f"{live.url}/ui/local/shelf/?version=1.0")
    page.fill("#release-actions input[name=reason]", "broken build")
    page.click("text=Yank 1.0")
    page.wait_for_url("**/ui/local/shelf/?version=1.0&done=yanked")
    assert "broken build" in page.locator(".yanked-note").inner_text()
    assert simple_files(live)["shelf-1.0-py3-none-any.whl"]["yanked"] == "broken build"
    page.screenshot(path=screenshots / "release-yanked.png", full_page=True)
    page.click("text=Unyank 1.0")
    page.wait_for_url("**/ui/local/shelf/?version=1.0&done=unyanked")
    assert simple_files(live)["shelf-1.0-py3-none-any.whl"]["yanked"] is False

    delete = page.locator("ul.files li form")
    delete.locator("button:text('Delete file')").click()  # unticked: the browser itself refuses to send it
    assert page.url.endswith("done=unyanked") and "shelf-1.0-py3-none-any.whl" in simple_files(live)
    delete.locator("input[name=confirm]").check()
    delete.locator("button:text('Delete file')").click()
    page.wait_for_url("**/ui/local/shelf/?done=deleted")
    assert "File deleted." in page.locator(".notice").inner_text()
    assert list(simple_files(live)) == ["shelf-2.0-py3-none-any.whl"]
    page.screenshot(path=screenshots / "release-file-deleted.png", full_page=True)

    reader = signed_in(browser, live, "carol")
    reader.goto(f"{live.url}/ui/local/shelf/")
    assert reader.locator("#release-actions").count() == 0 and reader.locator("ul.files form").count() == 0


def test_a_repository_admin_grants_and_revokes_access(live, browser, screenshots) -> None:
    page = signed_in(browser, live, "alice")
    page.goto(f"{live.url}/ui/local/")
    page.fill("#access input[name=user][type=text]", "bob")
    page.select_option("#access select[name=level]", "upload")
    page.click("#access button:text('Grant')")
    page.wait_for_url("**/ui/local/?done=granted#access")
    assert page.locator("#access tr[data-user=bob]").inner_text().split() == ["bob", "upload", "Revoke"]
    page.screenshot(path=screenshots / "repository-access.png", full_page=True)

    page.fill("#access input[name=user][type=text]", "nobody-here")
    page.click("#access button:text('Grant')")
    assert page.locator(".error p").first.inner_text() == "user 'nobody-here' not found"
    page.screenshot(path=screenshots / "repository-access-refused.png", full_page=True)

    page.goto(f"{live.url}/ui/local/")
    page.locator("#access tr[data-user=bob] button:text('Revoke')").click()
    page.wait_for_url("**/ui/local/?done=revoked-grant#access")
    assert page.locator("#access tr[data-user=bob]").count() == 0
    other = signed_in(browser, live, "carol")
    other.goto(f"{live.url}/ui/local/")
    assert other.locator("#access").count() == 0
