"""End to end with the real tools: build with `python -m build`, publish with twine and uv, install with pip
and uv into fresh virtual environments, against `python app.py` and gunicorn alike."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import LiveServer, build, make_project, new_venv, run, uv

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Two projects, one depending on the other; the library's name needs normalizing (Team_Utils)."""
    from tests.integration.conftest import isolated_env
    tmp = tmp_path_factory.mktemp("dists")
    env = isolated_env(tmp / "home")
    return {
        "utils": build(make_project(tmp, "Team_Utils", "1.0"), tmp / "utils", env),
        "app": build(make_project(tmp, "team-app", "0.1", dependencies=("team.utils>=1.0",)), tmp / "app", env),
        "utils-other-bytes": build(make_project(tmp, "Team_Utils", "1.0", marker="b"), tmp / "other", env),
    }


def twine(live: LiveServer, env: dict[str, str], *args: str | Path, repo: str = "local", check: bool = True):
    return run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                "--repository-url", f"{live.url}/{repo}/", "-u", "admin", f"--password={live.admin_password}", *args],
               env=env, check=check)


def uv_publish(live: LiveServer, env: dict[str, str], *args: str | Path, check: bool = True):
    return run([uv(), "publish", "--publish-url", f"{live.url}/local/", "--username", "admin",
                f"--password={live.admin_password}", "--trusted-publishing", "never", "--no-progress", *args],
               env=env, check=check)


def page(live: LiveServer, project: str, repo: str | None = "local") -> dict:
    response = requests.get(f"{live.simple(repo)}{project}/", headers={"Accept": JSON}, timeout=10)
    response.raise_for_status()
    return response.json()


def test_twine_uploads_wheel_and_sdist(live: LiveServer, client_env, dists) -> None:
    result = twine(live, client_env, *dists["utils"])
    assert "Uploading" in result.stdout + result.stderr
    files = {f["filename"]: f for f in page(live, "team-utils")["files"]}
    assert sorted(files) == sorted(p.name for p in dists["utils"])
    for path in dists["utils"]:
        assert files[path.name]["hashes"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_uv_publish_uploads_wheel_and_sdist(live: LiveServer, client_env, dists) -> None:
    uv_publish(live, client_env, *dists["app"])
    assert sorted(f["filename"] for f in page(live, "team-app")["files"]) == sorted(p.name for p in dists["app"])


def test_identical_reupload_succeeds_and_other_bytes_conflict(live: LiveServer, client_env, dists) -> None:
    twine(live, client_env, *dists["utils"])
    before = page(live, "team-utils")["files"]
    refused = twine(live, client_env, *dists["utils-other-bytes"], check=False)
    assert refused.returncode != 0
    assert "409" in refused.stdout + refused.stderr
    assert page(live, "team-utils")["files"] == before


def test_twine_skip_existing_skips_what_exists(live: LiveServer, client_env, dists) -> None:
    result = twine(live, client_env, "--skip-existing", *dists["utils-other-bytes"])
    assert "Skipping" in result.stdout + result.stderr
    hashes = {f["hashes"]["sha256"] for f in page(live, "team-utils")["files"]}
    assert hashes == {hashlib.sha256(p.read_bytes()).hexdigest() for p in dists["utils"]}


def test_uv_publish_check_url_skips_what_exists(live: LiveServer, client_env, dists) -> None:
    result = uv_publish(live, client_env, "--check-url", live.simple("local"), *dists["app"])
    output = result.stdout + result.stderr
    assert "already exists" in output.lower() or "skipping" in output.lower(), output


def test_pip_installs_with_a_dependency(live: LiveServer, client_env, dists, tmp_path: Path) -> None:
    python = new_venv(tmp_path / "venv", client_env)
    host = live.url.removeprefix("http://").split(":")[0]
    run([python, "-m", "pip", "install", "--index-url", live.simple("local"), "--trusted-host", host,
         "team-app"], env=client_env)
    result = run([python, "-c", "import team_app, team_utils; print(team_app.VERSION, team_utils.VERSION, "
                  "team_utils.MARKER)"], env=client_env)
    assert result.stdout.split() == ["0.1", "1.0"]


def test_pip_installs_from_the_default_group_by_an_unnormalized_name(live, client_env, dists, tmp_path) -> None:
    python = new_venv(tmp_path / "venv", client_env)
    run([python, "-m", "pip", "install", "--index-url", live.simple(), "Team.Utils==1.0"], env=client_env)
    result = run([python, "-m", "pip", "show", "team-utils"], env=client_env)
    assert "Version: 1.0" in result.stdout


def test_uv_installs_with_a_dependency(live: LiveServer, client_env, dists, tmp_path: Path) -> None:
    venv = tmp_path / "uv-venv"
    run([uv(), "venv", "--python", sys.executable, venv], env=client_env)
    run([uv(), "pip", "install", "--python", venv / "bin" / "python", "--index-url", live.simple(),
         "team-app"], env=client_env)
    result = run([venv / "bin" / "python", "-c", "import team_app, team_utils; print(team_utils.VERSION)"],
                 env=client_env)
    assert result.stdout.strip() == "1.0"


def test_non_normalized_project_url_redirects(live: LiveServer) -> None:
    response = requests.get(f"{live.simple('local')}Team_Utils/", allow_redirects=False, timeout=10)
    assert response.status_code == 301
    followed = requests.get(f"{live.simple('local')}Team_Utils/", headers={"Accept": JSON}, timeout=10)
    assert followed.url == f"{live.simple('local')}team-utils/"
    assert followed.json()["name"] == "team-utils"


def test_every_listed_file_downloads_with_its_hash(live: LiveServer) -> None:
    for project in ("team-utils", "team-app"):
        url = f"{live.simple()}{project}/"
        for file in page(live, project, repo=None)["files"]:
            body = requests.get(requests.compat.urljoin(url, file["url"]), timeout=10).content
            assert hashlib.sha256(body).hexdigest() == file["hashes"]["sha256"]
            assert len(body) == file["size"]


def test_a_download_is_dated_once(live: LiveServer) -> None:
    """By the server as it sends it, whether the view answers or the memo repeats the answer."""
    file = page(live, "team-utils")["files"][0]
    url = requests.compat.urljoin(f"{live.simple('local')}team-utils/", file["url"])
    for _ in range(2):
        response = requests.get(url, timeout=10)
        assert response.status_code == 200 and len(response.raw.headers.getlist("Date")) == 1


def test_no_header_moves_the_index_under_another_path(live: LiveServer) -> None:
    """pypilite believes X-Forwarded-* itself, from a proxy on this machine only (web/forwarded.py); gunicorn is
    told to believe no header at all (gunicorn.conf.py), so one named like a WSGI variable changes nothing."""
    response = requests.get(f"{live.url}/ui/local/", headers={"SCRIPT_NAME": "/spoofed"}, timeout=10)
    assert response.status_code == 200
    assert f"{live.url}/local/simple/" in response.text and "/spoofed" not in response.text
