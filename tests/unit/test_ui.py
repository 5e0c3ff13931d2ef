"""The web UI with Flask's test client: what each reader sees, bad query strings, hostile metadata, the
rendered README, snippet URLs, and a query count that does not grow with the number of projects."""

from __future__ import annotations

import html as html_module
import re
from datetime import datetime

import pytest

from pypilite import descriptions, grants, tokens, users
from pypilite.audit import Actor
from pypilite.models import File, Project, Repository
from tests.conftest import CLOSED_UPSTREAM, Index, basic
from tests.distfactory import metadata_text, sdist_bytes, wheel_bytes

ACTOR = Actor("test", "local")
REPOSITORIES = [
    {"name": "local", "repository_type": "hosted"},
    {"name": "team", "repository_type": "hosted", "public": False},
    {"name": "pypi", "repository_type": "proxy", "remote_url": CLOSED_UPSTREAM, "remote_timeout": 2},
    {"name": "all", "repository_type": "group", "members": ["local", "team", "pypi"], "upload_to": "local"},
]
READER = basic("reader", "reader-password")
STRANGER = basic("stranger", "stranger-password")


def wheel(name: str, version: str, *, extra_headers: str = "", description: str = "A long description.") -> bytes:
    text = metadata_text(name, version).replace("A long description.\n", description + "\n")
    if extra_headers:
        text = text.replace("Summary: a test package\n", extra_headers.rstrip("\n") + "\n")
    return wheel_bytes(name, version, metadata=text)


def upload(index: Index, name: str, version: str, repo: str = "local", **kwargs) -> None:
    filename = f"{name.replace('-', '_').replace('.', '_')}-{version}-py3-none-any.whl"
    response = index.upload(filename, wheel(name, version, **kwargs), repo=repo, name=name, version=version)
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.fixture
def index(tmp_path) -> Index:
    index = Index(tmp_path / "data", {"repository": REPOSITORIES})
    index.run(users.create_user, "reader", "reader-password", ACTOR)
    index.run(users.create_user, "stranger", "stranger-password", ACTOR)
    index.run(grants.set_grant, "reader", "team", "read", ACTOR)
    upload(index, "public-pkg", "1.0")
    upload(index, "secret-pkg", "2.0", repo="team")
    return index


def page(index: Index, url: str, headers: dict[str, str] | None = None, status: int = 200, **kwargs) -> str:
    response = index.get(url, headers=dict(headers or {}), **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def repo_names(html: str) -> list[str]:
    table = html[html.find('<table class="repos"'):]
    return re.findall(r'<a href="ui/([^/"]+)/">', table)


def project_names(html: str) -> list[str]:
    return re.findall(r'<a class="name" href="[^"]+">([^<]+)</a>', html)


# --- who sees what ---------------------------------------------------------------------------------------------

def test_a_private_repository_is_absent_for_the_anonymous_and_present_for_a_reader(index: Index) -> None:
    assert repo_names(page(index, "/")) == ["all", "local", "pypi"]
    assert repo_names(page(index, "/", STRANGER)) == ["all", "local", "pypi"]
    assert repo_names(page(index, "/", READER)) == ["all", "local", "pypi", "team"]
    assert repo_names(page(index, "/", index.auth)) == ["all", "local", "pypi", "team"]


def test_search_shows_only_readable_projects(index: Index) -> None:
    assert "secret-pkg" not in page(index, "/?q=secret")
    assert "secret-pkg" not in page(index, "/?q=secret", STRANGER)
    assert project_names(page(index, "/?q=secret", READER)) == ["secret-pkg"]
    assert project_names(page(index, "/?q=pkg", READER)) == ["public-pkg", "secret-pkg"]
    assert project_names(page(index, "/?q=pkg")) == ["public-pkg"]


def test_a_group_counts_and_lists_only_readable_members(index: Index) -> None:
    assert project_names(page(index, "/ui/all/")) == ["public-pkg"]
    assert project_names(page(index, "/ui/all/", READER)) == ["secret-pkg", "public-pkg"]
    anonymous_row = page(index, "/").split('href="ui/all/"')[1]
    reader_row = page(index, "/", READER).split('href="ui/all/"')[1]
    assert re.search(r'data-label="Projects" class="num">(\d+)<', anonymous_row).group(1) == "1"
    assert re.search(r'data-label="Projects" class="num">(\d+)<', reader_row).group(1) == "2"
    page(index, "/ui/all/secret-pkg/", status=404)
    assert "secret-pkg" in page(index, "/ui/all/secret-pkg/", READER)


def test_private_pages_ask_for_credentials(index: Index) -> None:
    for url in ("/ui/team/", "/ui/team/secret-pkg/", "/ui/team/no-such/"):
        response = index.get(url)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'
        assert "secret_pkg-2.0" not in response.get_data(as_text=True)  # (its name is in the URL asked for)
    assert "secret-pkg" not in index.get("/ui/team/").get_data(as_text=True)
    assert index.get("/ui/team/", headers=dict(STRANGER)).status_code == 403
    assert "secret-pkg" in page(index, "/ui/team/", READER)


def test_a_token_narrowed_to_another_repository_does_not_see_a_private_one(index: Index) -> None:
    token = index.run(tokens.create_token, "reader", ACTOR, repos=["local"])[1]
    narrowed = basic("__token__", token)
    assert "team" not in repo_names(page(index, "/", narrowed))
    assert "secret-pkg" not in page(index, "/?q=secret", narrowed)


def test_login_challenges_until_credentials_come_then_goes_home(index: Index) -> None:
    response = index.get("/login")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'
    wrong = index.get("/login", headers=basic("reader", "wrong"))
    assert wrong.status_code == 401 and "Invalid username or password" in wrong.get_data(as_text=True)
    assert index.get("/login", headers=dict(READER)).headers["Location"] == "./"
    assert index.get("/login?next=/ui/team/", headers=dict(READER)).headers["Location"] == "ui/team/"
    for hostile in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        assert index.get("/login", query_string={"next": hostile}, headers=dict(READER)).headers["Location"] == "./"


# --- bad query strings and unknown things -------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "", " 1", "1e3", "9" * 10, "٣"])
def test_bad_page_numbers_are_400(index: Index, value: str) -> None:
    for url, query in (("/ui/local/", {}), ("/ui/all/", {}), ("/", {"q": "pkg"})):
        response = index.get(url, query_string={**query, "page": value})
        assert response.status_code == 400, (url, value)
        assert "page must be a whole number" in response.get_data(as_text=True)


def test_pages_past_the_last_are_404_and_page_one_of_nothing_is_empty(index: Index) -> None:
    assert index.get("/ui/local/?page=2").status_code == 404
    assert index.get("/ui/local/?page=999999999").status_code == 404
    assert "Nothing cached yet" in page(index, "/ui/pypi/?page=1")


def test_pagination_splits_at_fifty(index: Index) -> None:
    for n in range(50):
        upload(index, f"bulk-{n:02d}", "1.0")
    first = project_names(page(index, "/ui/local/?sort=name"))
    second = project_names(page(index, "/ui/local/?sort=name&page=2"))
    assert len(first) == 50 and second == ["public-pkg"]
    assert first == sorted(first) and first[0] == "bulk-00"
    assert 'rel="next" href="../../ui/local/?' in page(index, "/ui/local/?sort=name")
    assert project_names(page(index, "/ui/local/"))[0] == "bulk-49"  # newest first


@pytest.mark.parametrize("value", ["", "oldest", "name;drop", "NAME", "x" * 5000])
def test_bad_sort_values_are_400(index: Index, value: str) -> None:
    response = index.get("/ui/local/", query_string={"sort": value})
    assert response.status_code == 400
    assert "sort must be one of newest, name" in response.get_data(as_text=True)


@pytest.mark.parametrize("url", ["/ui/nope/", "/ui/nope/x/", "/ui/local/no-such/", "/ui/local/public-pkg/?version=9",
                                 "/ui/local/-bad-/", "/ui/local/a%20b/", "/ui/local/%00/",
                                 "/ui/local/public-pkg/?version=%00"])
def test_unknown_or_invalid_things_are_404(index: Index, url: str) -> None:
    response = index.get(url)
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_an_error_page_still_knows_who_is_signed_in_and_never_retries_bad_credentials(index: Index) -> None:
    signed_in = index.get("/ui/local/nothing-here/", headers=index.auth)
    assert signed_in.status_code == 404 and b'title="signed in">admin<' in signed_in.data
    failed = index.get("/ui/local/", headers=basic("admin", "wrong"))
    assert failed.status_code == 401 and b'title="signed in"' not in failed.data


def test_a_non_normalized_project_name_redirects_keeping_the_version(index: Index) -> None:
    response = index.get("/ui/local/Public_Pkg/?version=1.0")
    assert response.status_code == 301
    assert response.headers["Location"] == "../../../ui/local/public-pkg/?version=1.0"
    # Query keys that are the route's own (or anything else) neither break the redirect nor ride along.
    for query in ("repo=x", "project=y", "version=1.0&repo=x&other=z"):
        moved = index.get(f"/ui/local/Public_Pkg/?{query}")
        assert moved.status_code == 301 and "repo=" not in moved.headers["Location"]


def test_odd_but_valid_names_display_as_published_and_link_normalized(index: Index) -> None:
    upload(index, "Odd.Name_9", "0.1.dev0")
    html = page(index, "/ui/local/")
    assert '<a class="name" href="../../ui/local/odd-name-9/">Odd.Name_9</a>' in html
    assert "<h1>Odd.Name_9" in page(index, "/ui/local/odd-name-9/")


@pytest.mark.parametrize("query", ["<script>alert(1)</script>", "' OR 1=1 --", "%", "名前", "a" * 100])
def test_hostile_search_text_finds_nothing_and_is_escaped(index: Index, query: str) -> None:
    html = page(index, "/", query_string={"q": query})
    assert project_names(html) == []
    assert "<script>alert(1)</script>" not in html


def test_search_text_too_long_is_400(index: Index) -> None:
    response = index.get("/", query_string={"q": "a" * 101})
    assert response.status_code == 400
    assert "too long" in response.get_data(as_text=True)


def test_search_matches_normalized_names_exact_first(index: Index) -> None:
    upload(index, "pkg", "1.0")
    upload(index, "zz-pkg-extra", "1.0")
    assert project_names(page(index, "/", query_string={"q": "PKG"}))[0] == "pkg"
    assert project_names(page(index, "/", query_string={"q": "Public.PKG"})) == ["public-pkg"]


# --- what packages say ---------------------------------------------------------------------------------------------

HOSTILE_HEADERS = """\
Summary: <script>alert('summary')</script>
Author: <img src=x onerror=alert('author')>
Home-page: javascript:alert('home')
Project-URL: Docs, javascript:alert('docs')
Project-URL: Source, https://example.invalid/src
Keywords: <b>bold</b>
Description-Content-Type: text/markdown
"""
HOSTILE_MARKDOWN = """\
# Title

<script>alert('readme')</script>
<img src="x" onerror="alert('img')">
[link](javascript:alert('link'))
<a href="javascript:alert('a')">a</a>
<iframe src="https://example.invalid/"></iframe>
"""


def test_hostile_metadata_is_escaped_and_the_readme_sanitized(index: Index) -> None:
    upload(index, "evil", "1.0", extra_headers=HOSTILE_HEADERS, description=HOSTILE_MARKDOWN)
    html = page(index, "/ui/local/evil/")
    lowered = html.lower()
    assert "<script>alert" not in lowered and "<iframe" not in lowered
    assert "onerror" not in lowered.replace("onerror=alert(&#39;author&#39;)", "")  # the author, as text
    assert 'href="javascript' not in lowered
    assert "&lt;script&gt;alert(&#39;summary&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(&#39;author&#39;)&gt;" in html
    assert "<dd>javascript:alert(&#39;home&#39;)</dd>" in html
    assert '<a rel="nofollow noopener" href="https://example.invalid/src">' in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert '<h1 id="user-content-title">Title' in html


def test_restructuredtext_raw_html_is_not_passed_through(index: Index) -> None:
    rst = "Title\n=====\n\n.. raw:: html\n\n   <script>alert('raw')</script>\n\n`x <javascript:alert(1)>`_\n"
    upload(index, "rsty", "1.0", description=rst)
    html = page(index, "/ui/local/rsty/")
    assert "<script>alert" not in html and 'href="javascript' not in html
    assert "Title" in html  # readme-renderer refuses the raw directive: the text is shown as plain text


@pytest.mark.parametrize("content_type", ["text/x-weird", "application/json", "text/markdown; variant=Evil",
                                          "text/markdown; charset=utf-8; variant=CommonMark", ";;;", "text/"])
def test_any_description_content_type_renders_safely(index: Index, content_type: str) -> None:
    upload(index, "typed", "1.0", extra_headers=f"Summary: s\nDescription-Content-Type: {content_type}\n",
           description="*hello* <script>alert(1)</script>")
    html = page(index, "/ui/local/typed/")
    assert "<script>alert" not in html
    assert "hello" in html


def test_render_by_content_type() -> None:
    assert "<em>hello</em>" in descriptions.render("*hello*", "text/markdown")
    assert "<em>hello</em>" in descriptions.render("*hello*", "")  # reST when unsaid, as Warehouse
    assert "<em>" not in descriptions.render("*hello*", "text/plain")
    assert "<em>" not in descriptions.render("*hello*", "text/x-unknown")
    long = descriptions.render("*x* " * 200_000, "text/markdown")
    assert "<em>" not in long and "description cut here" in long


def test_safe_url_accepts_only_http() -> None:
    assert descriptions.safe_url(" https://example.invalid/a ") == "https://example.invalid/a"
    for url in ("javascript:alert(1)", "JAVASCRIPT:x", "data:text/html,x", "//evil", "http://a b", "vbscript:x", ""):
        assert descriptions.safe_url(url) is None


def test_an_sdist_only_release_shows_its_pkg_info_description(index: Index) -> None:
    data = sdist_bytes("only-sdist", "3.0", metadata=metadata_text("only-sdist", "3.0").replace(
        "A long description.", "The words of the sdist."))
    assert index.upload("only_sdist-3.0.tar.gz", data, name="only-sdist", version="3.0").status_code == 200
    html = page(index, "/ui/local/only-sdist/")
    assert "<p>The words of the sdist.</p>" in html


def test_yanked_versions_are_marked_with_their_reason_and_not_chosen(index: Index) -> None:
    upload(index, "public-pkg", "1.1")
    upload(index, "public-pkg", "2.0rc1")
    response = index.client.post("/api/v1/repos/local/projects/public-pkg/1.1/yank",
                                 json={"reason": "broken <b>badly</b>"}, headers=index.auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    html = page(index, "/ui/local/public-pkg/")
    assert "<h1>public-pkg <span class=\"version\">1.0</span>" in html  # not the yanked 1.1, not the rc
    assert "yanked: broken &lt;b&gt;badly&lt;/b&gt;" in html
    assert "This version is yanked: broken" in page(index, "/ui/local/public-pkg/?version=1.1")


def test_a_proxy_shows_what_it_has_cached_without_asking_upstream(index: Index) -> None:
    """The proxy's upstream is a closed port: asking it would answer 502, not the cached page."""
    def cache() -> None:
        proxy = Repository.get(Repository.name == "pypi")
        project = Project.create(repository=proxy, name="cached-pkg", display_name="cached-pkg")
        File.create(project=project, filename="cached_pkg-1.0-py3-none-any.whl", version="1.0",
                    packagetype="bdist_wheel", sha256="ab" * 32, size=10, upload_time=datetime(2024, 1, 2),
                    origin_url="http://127.0.0.1:9/cached_pkg-1.0-py3-none-any.whl")
    index.run(cache)
    assert project_names(page(index, "/ui/pypi/")) == ["cached-pkg"]
    html = page(index, "/ui/pypi/cached-pkg/")
    assert "cached_pkg-1.0-py3-none-any.whl" in html
    assert "not stored here yet" in html
    assert "cached-pkg" in page(index, "/ui/all/cached-pkg/")
    assert index.get("/pypi/simple/cached-pkg/").status_code == 502  # what the Simple API does: it asks


def test_links_are_relative_so_a_sub_path_proxy_needs_no_settings(index: Index) -> None:
    html = page(index, "/ui/local/public-pkg/")
    assert 'href="../../../static/ui/ui.css"' in html
    assert 'href="../../../local/files/local/' in html
    assert 'href="../../../all/files/local/' in page(index, "/ui/all/public-pkg/")  # under the group's own path
    assert not re.search(r'(href|src|action)="/', html)


# --- snippets, headers ---------------------------------------------------------------------------------------------

def snippet(html: str, snippet_id: str) -> str:
    found = re.search(rf'<pre id="{snippet_id}"><code>(.*?)</code></pre>', html, re.S)
    assert found, snippet_id
    return found.group(1)


def test_snippets_use_the_request_url_and_credential_placeholders_for_private(index: Index) -> None:
    html = page(index, "/ui/local/")
    assert snippet(html, "pip-cli") == ("pip install --index-url http://localhost/local/simple/ "
                                        "--trusted-host localhost your-package")
    assert "repository = http://localhost/local/" in snippet(html, "twine-pypirc")
    private = page(index, "/ui/team/", READER)
    assert "index-url = http://__token__:YOUR_TOKEN@localhost/team/simple/" in snippet(private, "pip-conf")
    assert "machine localhost" in snippet(private, "netrc")
    assert "twine-pypirc" not in page(index, "/ui/pypi/")  # a proxy takes no uploads
    # pdm asks its default index besides any source unless a source is named "pypi": it must ask pypilite alone.
    assert ('[[tool.pdm.source]]\nname = "pypi"\nurl = "http://localhost/local/simple/"'
            in html_module.unescape(snippet(html, "pdm")))
    # Over plain http pdm and pipenv skip an index they are not told to trust.
    assert "verify_ssl = false" in snippet(html, "pdm") and "verify_ssl = false" in snippet(html, "pipenv")


def test_public_url_wins(tmp_path) -> None:
    index = Index(tmp_path / "data", {"server": {"public_url": "https://pkgs.example.invalid/index/"}})
    html = page(index, "/ui/local/")
    expected = "pip install --index-url https://pkgs.example.invalid/index/local/simple/ your-package"
    assert snippet(html, "pip-cli") == expected
    assert "verify_ssl = true" in snippet(html, "pdm") and "verify_ssl = true" in snippet(html, "pipenv")


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "pkgs.example.invalid", "X-Forwarded-Prefix": "/pi"}


def test_forwarded_headers_count_only_from_a_loopback_proxy(index: Index) -> None:
    local = index.client.get("/ui/local/", headers=FORWARDED, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert "https://pkgs.example.invalid/pi/local/simple/" in local.get_data(as_text=True)
    remote = index.client.get("/ui/local/", headers=FORWARDED, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert "pkgs.example.invalid" not in remote.get_data(as_text=True)
    bad = index.client.get("/ui/local/", headers={"X-Forwarded-Host": "evil\"><script>", "X-Forwarded-Proto": "gopher"})
    assert "evil" not in bad.get_data(as_text=True) and "gopher" not in bad.get_data(as_text=True)


def test_ui_pages_carry_a_content_security_policy_and_the_simple_api_does_not(index: Index) -> None:
    response = index.get("/ui/local/public-pkg/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert "Content-Security-Policy" not in index.get("/simple/").headers
    assert index.get("/static/ui/ui.css").status_code == 200
    assert index.get("/static/ui/../../__init__.py").status_code == 404


# --- no N+1 --------------------------------------------------------------------------------------------------------

def count_queries(index: Index, monkeypatch: pytest.MonkeyPatch, url: str, headers=None) -> int:
    calls = []
    original = index.database.execute_sql

    def counted(sql, params=None, *args, **kwargs):
        calls.append(sql)
        return original(sql, params, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(index.database, "execute_sql", counted)
        assert index.get(url, headers=dict(headers or {})).status_code == 200
    return len(calls)


UI_URLS = ["/", "/?q=pkg", "/ui/local/", "/ui/local/?sort=name", "/ui/all/", "/ui/team/"]


def test_query_count_does_not_grow_with_projects(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    for url in UI_URLS:  # the first request verifies the password (and checks the throttle); later ones do not
        count_queries(index, monkeypatch, url, READER)
    before = {url: count_queries(index, monkeypatch, url, READER) for url in UI_URLS}
    for n in range(49):
        upload(index, f"many-pkg-{n}", "1.0")
        upload(index, f"team-pkg-{n}", "1.0", repo="team")
    after = {url: count_queries(index, monkeypatch, url, READER) for url in UI_URLS}
    assert after == before
    assert max(after.values()) <= 12
