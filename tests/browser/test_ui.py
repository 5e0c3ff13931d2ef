"""The web UI in a real browser against the live server: from the repository list to a project, its README
rendered without running anything a package put in it, private repositories behind the browser's Basic
prompt, and setup snippets copied with the page's own button and run with the real pip."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError

from tests.browser.conftest import DESKTOP, PHONE
from tests.conftest import CLOSED_UPSTREAM
from tests.distfactory import metadata_text, wheel_bytes
from tests.integration.conftest import (
    LiveServer,
    build,
    isolated_env,
    make_project,
    new_venv,
    run,
    start_server,
    stop_server,
)

REPOSITORIES = [
    {"name": "local", "repository_type": "hosted"},
    {"name": "team", "repository_type": "hosted", "public": False},
    {"name": "pypi", "repository_type": "proxy", "remote_url": CLOSED_UPSTREAM, "remote_timeout": 2},
    {"name": "all", "repository_type": "group", "members": ["local", "team", "pypi"], "upload_to": "local"},
]

# Each trap would set window.pwned (or the title) if the page ran it.
HOSTILE_README = """\
# Hello from hello-ui

Some **bold** text and a list:

- one
- two

<script>window.pwned = "script"; document.title = "pwned";</script>

<img src="x" onerror="window.pwned = 'onerror'">

[click me](javascript:window.pwned='link')

```python
print("hello")
```
"""

HOSTILE_RST = """\
rst-demo
========

A reStructuredText description with a `link <javascript:window.pwned='rst'>`_.

.. image:: x
   :target: javascript:window.pwned='image'

* item one
* item two

.. code:: python

   print("hello")
"""


def upload(live: LiveServer, repo: str, path_or_name: Path | str, data: bytes | None = None) -> None:
    filename = path_or_name.name if isinstance(path_or_name, Path) else path_or_name
    content = path_or_name.read_bytes() if isinstance(path_or_name, Path) else data
    stem = filename.removesuffix(".tar.gz").removesuffix(".whl").split("-")
    form = {":action": "file_upload", "protocol_version": "1", "name": stem[0], "version": stem[1],
            "filetype": "bdist_wheel" if filename.endswith(".whl") else "sdist",
            "sha256_digest": hashlib.sha256(content).hexdigest()}
    response = requests.post(f"{live.url}/{repo}/", data=form, files={"content": (filename, content)},
                             auth=("admin", live.admin_password), timeout=30)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server("app", tmp_path_factory.mktemp("ui-live"), repositories=REPOSITORIES)
    yield server
    stop_server(server.process)


@pytest.fixture(scope="module")
def packages(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A real package with a hostile Markdown README in `local`, a reST one, and a private one in `team`;
    returns a read-only token for `team`."""
    tmp = tmp_path_factory.mktemp("ui-packages")
    env = isolated_env(tmp / "home")
    source = make_project(tmp, "hello-ui", "1.0")
    (source / "README.md").write_text(HOSTILE_README)
    pyproject = source / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(
        'requires-python', 'readme = {file = "README.md", content-type = "text/markdown"}\nrequires-python'))
    for dist in build(source, tmp / "dist", env):
        upload(live, "local", dist)
    rst = metadata_text("rst-demo", "0.1").replace("A long description.\n", HOSTILE_RST)
    upload(live, "local", "rst_demo-0.1-py3-none-any.whl", wheel_bytes("rst-demo", "0.1", metadata=rst))
    for dist in build(make_project(tmp, "team-secret", "2.0"), tmp / "team-dist", env):
        upload(live, "team", dist)
    return {"team_token": new_token(live, {"repos": ["team"], "read_only": True}),
            "local_token": new_token(live, {"repos": ["local"]})}


def new_token(live: LiveServer, body: dict) -> str:
    response = requests.post(f"{live.url}/api/v1/tokens", json=body, auth=("admin", live.admin_password), timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["token"]


def new_page(browser, viewport: dict[str, int] = DESKTOP, **context_options):
    context = browser.new_context(viewport=viewport, **context_options)
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    return page


def assert_nothing_ran(page) -> None:
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.title() != "pwned"
    assert page.dialogs == []


def fits_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_from_the_repository_list_to_a_rendered_readme(live, packages, browser, screenshots) -> None:
    page = new_page(browser)
    page.goto(f"{live.url}/")
    rows = page.locator("table.repos tbody tr")
    assert sorted(rows.locator("td:first-child a").all_inner_texts()) == ["all", "local", "pypi"]
    assert "team" not in page.content()  # private, and the browser is anonymous
    local = rows.filter(has=page.locator("a", has_text="local"))
    assert local.locator("td[data-label=Projects]").inner_text() == "2"
    page.screenshot(path=screenshots / "home.png", full_page=True)

    page.click("table.repos a:text-is('local')")
    page.wait_for_url(f"{live.url}/ui/local/")
    assert page.locator("ul.projects .name").all_inner_texts() == ["rst-demo", "hello-ui"]  # newest first
    page.screenshot(path=screenshots / "repository.png", full_page=True)

    page.click("ul.projects a:text-is('hello-ui')")
    page.wait_for_url(f"{live.url}/ui/local/hello-ui/")
    readme = page.locator("article.readme")
    assert readme.locator("h1").inner_text().strip() == "Hello from hello-ui"
    assert readme.locator("strong").inner_text() == "bold"
    assert readme.locator("li").all_inner_texts() == ["one", "two"]
    assert readme.locator("pre").count() == 1
    assert readme.locator("script").count() == 0
    assert readme.locator("[onerror]").count() == 0
    assert readme.locator("a[href^='javascript']").count() == 0
    readme.locator("a", has_text="click me").click()
    readme.locator("img").first.wait_for(state="attached")
    assert_nothing_ran(page)
    files = page.locator("ul.files li .filename").all_inner_texts()
    assert sorted(files) == ["hello_ui-1.0-py3-none-any.whl", "hello_ui-1.0.tar.gz"]
    assert "by admin" in page.locator("ul.files li").first.inner_text()
    assert page.locator("code.sha").first.inner_text().startswith("sha256 ")
    page.screenshot(path=screenshots / "project.png", full_page=True)


def test_restructuredtext_readme_and_its_traps(live, packages, browser, screenshots) -> None:
    page = new_page(browser)
    page.goto(f"{live.url}/ui/local/rst-demo/")
    readme = page.locator("article.readme")
    assert readme.locator("h1").inner_text().strip() == "rst-demo"
    assert readme.locator("li").all_inner_texts() == ["item one", "item two"]
    assert readme.locator("a[href^='javascript']").count() == 0
    readme.locator("a", has_text="link").click()
    readme.locator("img").click()
    assert_nothing_ran(page)
    page.screenshot(path=screenshots / "project-rst.png", full_page=True)


def test_search_box_finds_only_what_the_reader_may_read(live, packages, browser, screenshots) -> None:
    page = new_page(browser)
    page.goto(f"{live.url}/")
    page.fill("input[name=q]", "HELLO_ui")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/?q=HELLO_ui")
    assert page.locator("ul.projects .name").all_inner_texts() == ["hello-ui"]
    page.screenshot(path=screenshots / "search.png", full_page=True)
    page.fill("input[name=q]", "secret")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/?q=secret")
    assert page.locator("ul.projects").count() == 0
    assert "team-secret" not in page.content()


def test_private_repository_asks_for_credentials(live, packages, browser, screenshots) -> None:
    # Headless Chromium cannot show its credentials prompt: it ends the navigation where a person would be
    # asked, which is what this checks.
    anonymous = new_page(browser)
    with anonymous.expect_response(f"{live.url}/ui/team/") as answer:
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            anonymous.goto(f"{live.url}/ui/team/")
    assert answer.value.status == 401
    assert answer.value.headers["www-authenticate"] == 'Basic realm="pypilite"'
    assert "team-secret" not in answer.value.text()

    # What a browser does once the user types credentials into its prompt: /login, then home.
    page = new_page(browser, http_credentials={"username": "admin", "password": live.admin_password})
    page.goto(f"{live.url}/login")
    assert page.url == f"{live.url}/"
    assert "team" in page.locator("table.repos").inner_text()
    assert page.locator(".who").inner_text().strip() == "admin"
    page.click("table.repos a:text-is('team')")
    page.wait_for_url(f"{live.url}/ui/team/")
    assert page.locator("ul.projects .name").all_inner_texts() == ["team-secret"]
    page.screenshot(path=screenshots / "private-repository.png", full_page=True)


def copy_snippet(page, snippet_id: str) -> str:
    """Press the page's Copy button and read what landed on the clipboard."""
    page.click(f"button.copy[data-copy='{snippet_id}']")
    page.wait_for_function("(id) => document.querySelector(`button[data-copy='${id}']`).textContent === 'Copied'",
                           arg=snippet_id)
    return page.evaluate("navigator.clipboard.readText()")


def clipboard_page(browser, live: LiveServer, **options):
    return new_page(browser, permissions=["clipboard-read", "clipboard-write"], **options)


def test_copied_pip_command_installs_the_package(live, packages, browser, tmp_path) -> None:
    page = clipboard_page(browser, live)
    page.goto(f"{live.url}/ui/local/hello-ui/")
    command = copy_snippet(page, "install")
    assert command == f"pip install --index-url {live.url}/local/simple/ --trusted-host 127.0.0.1 hello-ui==1.0"
    env = isolated_env(tmp_path / "home")
    python = new_venv(tmp_path / "venv", env)
    run([python, "-m", *command.split()], env=env)
    assert run([python, "-c", "import hello_ui; print(hello_ui.VERSION)"], env=env).stdout.strip() == "1.0"


def test_copied_pip_conf_of_a_private_repository_installs_with_a_token(live, packages, browser, tmp_path) -> None:
    page = clipboard_page(browser, live, http_credentials={"username": "admin", "password": live.admin_password})
    page.goto(f"{live.url}/ui/team/")
    pip_conf = copy_snippet(page, "pip-conf")
    assert "__token__:YOUR_TOKEN@127.0.0.1" in pip_conf
    config = tmp_path / "pip.conf"
    config.write_text(pip_conf.replace("YOUR_TOKEN", packages["team_token"]))
    env = isolated_env(tmp_path / "home", PIP_CONFIG_FILE=str(config))
    python = new_venv(tmp_path / "venv", env)
    run([python, "-m", "pip", "install", "team-secret"], env=env)
    assert run([python, "-c", "import team_secret; print(team_secret.VERSION)"], env=env).stdout.strip() == "2.0"


def test_copied_pypirc_publishes_with_twine_and_the_uv_command_installs(live, packages, browser, tmp_path) -> None:
    page = clipboard_page(browser, live)
    page.goto(f"{live.url}/ui/local/")
    pypirc = copy_snippet(page, "twine-pypirc")
    publish = copy_snippet(page, "twine-cli")
    install = copy_snippet(page, "uv-cli")
    home = tmp_path / "home"
    env = isolated_env(home)
    (home / ".pypirc").write_text(pypirc.replace("YOUR_TOKEN", packages["local_token"]))
    dist = tmp_path / "dist"
    build(make_project(tmp_path, "published-ui", "0.3"), dist, env)
    assert publish == "twine upload -r pypilite dist/*"
    run([sys.executable, "-m", "twine", "upload", "-r", "pypilite", *sorted(dist.iterdir())], env=env, cwd=tmp_path)
    venv = tmp_path / "venv"
    new_venv(venv, env)
    run(install.replace("your-package", "published-ui").split(), env={**env, "VIRTUAL_ENV": str(venv)})
    check = [venv / "bin" / "python", "-c", "import published_ui; print(published_ui.VERSION)"]
    assert run(check, env=env).stdout.strip() == "0.3"


@pytest.mark.parametrize("path", ["/", "/ui/local/", "/ui/local/hello-ui/", "/ui/all/", "/ui/pypi/",
                                  "/?q=hello", "/ui/local/nothing-here/"])
def test_pages_fit_a_phone(live, packages, browser, screenshots, path: str) -> None:
    page = new_page(browser, viewport=PHONE)
    page.goto(f"{live.url}{path}")
    name = "phone" + (path.replace("/", "_").replace("?", "_").replace("=", "-").rstrip("_") or "_home")
    page.screenshot(path=screenshots / f"{name}.png", full_page=True)
    assert fits_width(page), f"{path} is wider than a phone"
    assert_nothing_ran(page)


def test_setup_snippets_name_this_server(live, packages, browser, screenshots) -> None:
    page = new_page(browser)
    page.goto(f"{live.url}/ui/all/#setup")
    texts = dict(zip(page.locator(".snippet pre").evaluate_all("els => els.map(e => e.id)"),
                     page.locator(".snippet pre").all_inner_texts()))
    assert set(texts) >= {"pip-cli", "pip-conf", "uv-cli", "uv-pyproject", "poetry", "pdm", "pipenv",
                          "twine-pypirc", "twine-cli"}
    assert f"index-url = {live.url}/all/simple/" in texts["pip-conf"]
    assert f"repository = {live.url}/all/" in texts["twine-pypirc"]
    page.locator("#setup").screenshot(path=screenshots / "setup.png")
