"""The UI's maintainer forms with Flask's test client: yank, unyank and delete for users with upload rights on
a hosted repository, the Access section for a repository's admins; each refused without the right, from
another site's page, or on a repository that cannot do it, with nothing changed."""

from __future__ import annotations

import pytest

from pypilite import audit, grants, users
from pypilite.audit import Actor
from pypilite.models import File
from tests.conftest import Index, basic
from tests.distfactory import wheel_bytes

ACTOR = Actor("test", "local")
UPLOADER = basic("uploader", "uploader-password")
READER = basic("reader", "reader-password")
OWNER = basic("owner", "owner-password")
WHEEL = "demo-1.0-py3-none-any.whl"


@pytest.fixture
def index(tmp_path) -> Index:
    index = Index(tmp_path / "data")
    for name, level in (("uploader", "upload"), ("reader", "read"), ("owner", "admin")):
        index.run(users.create_user, name, f"{name}-password", ACTOR)
        index.run(grants.set_grant, name, "local", level, ACTOR)
    for version in ("1.0", "2.0"):
        assert index.upload(f"demo-{version}-py3-none-any.whl", wheel_bytes("demo", version)).status_code == 200
    return index


def post(index: Index, url: str, data: dict, who: dict[str, str], **headers: str):
    return index.client.post(url, data=data, headers={**who, **headers})


def text(response) -> str:
    return response.get_data(as_text=True)


def yanked(index: Index) -> dict[str, tuple[bool, str]]:
    return {f.filename: (f.yanked, f.yanked_reason) for f in index.run(lambda: list(File.select()))}


def holders(index: Index) -> dict[str, str]:
    return {g["user"]: g["level"] for g in index.run(grants.list_grants, "local")}


def test_an_uploader_sees_the_forms_and_yanks_unyanks_and_deletes(index: Index) -> None:
    page = text(index.get("/ui/local/demo/?version=1.0", headers=UPLOADER))
    assert "Yank 1.0" in page and "Delete file" in page
    done = post(index, "/ui/local/demo/-/yank", {"version": "1.0", "reason": "broken build"}, UPLOADER)
    assert done.status_code == 303 and done.headers["Location"].endswith("/ui/local/demo/?version=1.0&done=yanked")
    assert yanked(index)[WHEEL] == (True, "broken build")
    page = text(index.get("/ui/local/demo/?version=1.0&done=yanked", headers=UPLOADER))
    assert "Release yanked" in page and "Unyank 1.0" in page
    assert post(index, "/ui/local/demo/-/unyank", {"version": "1.0"}, UPLOADER).status_code == 303
    assert yanked(index)[WHEEL] == (False, "")
    refused = post(index, "/ui/local/demo/-/delete", {"filename": WHEEL}, UPLOADER)
    assert refused.status_code == 400 and "tick the box" in text(refused) and WHEEL in yanked(index)
    deleted = post(index, "/ui/local/demo/-/delete", {"filename": WHEEL, "confirm": "on"}, UPLOADER)
    assert deleted.status_code == 303 and deleted.headers["Location"].endswith("/ui/local/demo/?done=deleted")
    assert WHEEL not in yanked(index)
    last = post(index, "/ui/local/demo/-/delete", {"filename": "demo-2.0-py3-none-any.whl", "confirm": "on"},
                UPLOADER)
    assert last.status_code == 303 and last.headers["Location"].endswith("/ui/local/?done=deleted")
    events = [e.action for e in index.run(audit.query, limit=10)]
    assert events[:4] == ["file.delete", "file.delete", "release.unyank", "release.yank"]


@pytest.mark.parametrize("who, status", [(READER, 403), ({}, 401), (basic("nobody", "wrong-password"), 401)])
def test_without_upload_rights_no_form_is_shown_and_none_is_obeyed(index: Index, who, status: int) -> None:
    page = index.get("/ui/local/demo/?version=1.0", headers=who)
    assert "Yank" not in text(page) and "Delete file" not in text(page)
    for url, form in (("/ui/local/demo/-/yank", {"version": "1.0"}),
                      ("/ui/local/demo/-/delete", {"filename": WHEEL, "confirm": "on"})):
        assert post(index, url, form, who).status_code == status
    assert yanked(index)[WHEEL] == (False, "")


def test_a_group_page_offers_no_yank_and_its_route_says_why(index: Index) -> None:
    assert "Yank" not in text(index.get("/ui/all/demo/?version=1.0", headers=index.auth))
    response = post(index, "/ui/all/demo/-/yank", {"version": "1.0"}, index.auth)
    assert response.status_code == 400 and "only a hosted repository" in text(response)


@pytest.mark.parametrize("form, status, words", [
    ({"version": "9.9"}, 404, "demo 9.9 not found"),
    ({"version": "not a version"}, 400, "invalid version"),
    ({}, 400, "the form needs a version"),
])
def test_a_yank_form_with_a_mistake_says_so_in_one_line(index: Index, form, status: int, words: str) -> None:
    response = post(index, "/ui/local/demo/-/yank", form, UPLOADER)
    assert response.status_code == status and words in text(response)
    assert not any(y for y, _ in yanked(index).values())


def test_the_access_section_is_for_the_repositorys_admins(index: Index) -> None:
    for who in (UPLOADER, READER, {}):
        assert 'id="access"' not in text(index.get("/ui/local/", headers=who))
    page = text(index.get("/ui/local/", headers=OWNER))
    assert 'id="access"' in page and '<tr data-user="reader"><td>reader</td><td>read</td>' in page
    assert post(index, "/ui/local/-/access", {"user": "reader", "level": "upload"}, OWNER).status_code == 303
    assert holders(index)["reader"] == "upload"
    done = post(index, "/ui/local/-/access/revoke", {"user": "reader"}, OWNER)
    assert done.status_code == 303 and done.headers["Location"].endswith("/ui/local/?done=revoked-grant#access")
    assert "reader" not in holders(index)
    assert "Access revoked." in text(index.get("/ui/local/?done=revoked-grant", headers=OWNER))


@pytest.mark.parametrize("url, form, status, words", [
    ("/ui/local/-/access", {"user": "ghost", "level": "read"}, 404, "user &#39;ghost&#39; not found"),
    ("/ui/local/-/access", {"user": "reader", "level": "owner"}, 400, "level must be one of"),
    ("/ui/local/-/access/revoke", {"user": "stranger"}, 404, "not found"),
])
def test_an_access_form_with_a_mistake_says_so(index: Index, url: str, form, status: int, words: str) -> None:
    before = holders(index)
    response = post(index, url, form, OWNER)
    assert response.status_code == status and words in text(response)
    assert holders(index) == before


@pytest.mark.parametrize("who", [UPLOADER, READER])
def test_who_is_not_an_admin_can_neither_grant_nor_revoke(index: Index, who) -> None:
    before = holders(index)
    assert post(index, "/ui/local/-/access", {"user": "reader", "level": "admin"}, who).status_code == 403
    assert post(index, "/ui/local/-/access/revoke", {"user": "owner"}, who).status_code == 403
    assert holders(index) == before


@pytest.mark.parametrize("url, form", [
    ("/ui/local/demo/-/yank", {"version": "1.0"}),
    ("/ui/local/demo/-/unyank", {"version": "1.0"}),
    ("/ui/local/demo/-/delete", {"filename": WHEEL, "confirm": "on"}),
    ("/ui/local/-/access", {"user": "reader", "level": "admin"}),
    ("/ui/local/-/access/revoke", {"user": "reader"}),
])
@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}],
                         ids=["origin", "sec-fetch-site"])
def test_another_sites_form_is_refused_and_changes_nothing(index: Index, url: str, form, headers) -> None:
    before = yanked(index), holders(index)
    response = post(index, url, form, index.auth, **headers)
    assert response.status_code == 403 and "Cross-site request refused" in text(response)
    assert (yanked(index), holders(index)) == before

