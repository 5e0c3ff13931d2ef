"""Uploads the standards say an index must refuse, refused with a one-line reason the publisher shows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests

from tests.distfactory import sdist_bytes, sdist_with, tar_member, wheel_bytes, zip_sdist_bytes, zip_with
from tests.integration.conftest import BIN, LiveServer, listed, run


def test_attestations_are_refused_not_dropped(live: LiveServer, client_env: dict[str, str], tmp_path: Path) -> None:
    """PEP 740: an index that cannot verify an attestation must reject the upload; pypilite verifies none."""
    dist = tmp_path / "attested-1.0-py3-none-any.whl"
    dist.write_bytes(wheel_bytes("attested", "1.0"))
    attestation = Path(f"{dist}.publish.attestation")
    attestation.write_text('{"version": 1}')
    result = run([BIN / "twine", "upload", "--non-interactive", "--attestations", "--repository-url",
                  f"{live.url}/local/", "-u", "admin", "-p", live.admin_password, dist, attestation],
                 env=client_env, check=False)
    assert result.returncode != 0
    assert "Attestations are not verified here (PEP 740)" in result.stdout + result.stderr
    assert listed(live, "attested") == {}


def _upload(live: LiveServer, filename: str, data: bytes, **fields: str) -> requests.Response:
    name, version = filename.split("-")[:2]
    form = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version.removesuffix(".zip")
            .removesuffix(".tar.gz"), "filetype": "bdist_wheel" if filename.endswith(".whl") else "sdist",
            "sha256_digest": hashlib.sha256(data).hexdigest(), **fields}
    return requests.post(f"{live.url}/local/", data=form, files={"content": (filename, data)},
                         auth=("admin", live.admin_password), timeout=30)


def _metadata(version: str = "2.4", **headers: str) -> str:
    lines = [f"Metadata-Version: {version}", "Name: strict", "Version: 1.0"]
    lines += [f"{key.replace('_', '-')}: {value}" for key, value in headers.items()]
    return "\n".join(lines) + "\n\n"


REFUSED = {  # what Warehouse refuses too, each with the reason a publisher reads
    "wheel without RECORD": ("strict-1.0-py3-none-any.whl", lambda: wheel_bytes("strict", "1.0", with_record=False),
                             {}, "RECORD is missing"),
    "Metadata-Version 3.0": ("strict-1.0-py3-none-any.whl", lambda: wheel_bytes("strict", "1.0",
                             metadata=_metadata("3.0")), {}, "Metadata-Version 3.0 is newer than this index"),
    "Metadata-Version abc": ("strict-1.0-py3-none-any.whl", lambda: wheel_bytes("strict", "1.0",
                             metadata=_metadata("abc")), {}, "Metadata-Version 'abc' is not a version"),
    "form metadata_version 3.0": ("strict-1.0-py3-none-any.whl", lambda: wheel_bytes("strict", "1.0"),
                                  {"metadata_version": "3.0"}, "the form's Metadata-Version 3.0 is newer"),
    "License-File missing from a wheel": (
        "strict-1.0-py3-none-any.whl", lambda: wheel_bytes("strict", "1.0", metadata=_metadata(License_File="LICENSE")),
        {}, "License-File 'LICENSE' is not in the archive"),
    "License-File missing from an sdist": (
        "strict-1.0.tar.gz", lambda: sdist_bytes("strict", "1.0", metadata=_metadata(License_File="COPYING")),
        {}, "License-File 'COPYING' is not in the archive"),
    "License-Expression not SPDX": (
        "strict-1.0-py3-none-any.whl", lambda: wheel_bytes("strict", "1.0",
                                                           metadata=_metadata(License_Expression="MIT OR Whatever")),
        {}, "is not a valid SPDX expression"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_the_standards_refuse_is_refused_in_one_line(live: LiveServer, case: str) -> None:
    filename, build, fields, words = REFUSED[case]
    response = _upload(live, filename, build(), **fields)
    assert response.status_code == 400 and words in response.text and response.text.count("\n") == 1, response.text
    assert listed(live, "strict") == {}


def test_licenses_that_are_there_and_legacy_sdist_names_are_taken(live: LiveServer) -> None:
    metadata = _metadata(License_Expression="mit OR apache-2.0", License_File="LICENSE")
    wheel = zip_with(wheel_bytes("licensed", "1.0", metadata=metadata.replace("strict", "licensed")),
                     "licensed-1.0.dist-info/licenses/LICENSE")
    assert _upload(live, "licensed-1.0-py3-none-any.whl", wheel).status_code == 200
    sdist = sdist_with("licensed", "1.0", tar_member("licensed-1.0/LICENSE"),
                       metadata=metadata.replace("strict", "licensed"))
    assert _upload(live, "licensed-1.0.tar.gz", sdist).status_code == 200
    legacy = sdist_bytes("Legacy_Name", "1.0", root="Legacy_Name-1.0")  # what older setuptools wrote
    assert _upload(live, "Legacy_Name-1.0.tar.gz", legacy, name="Legacy_Name").status_code == 200


def test_a_second_sdist_for_a_release_is_refused(live: LiveServer) -> None:
    assert _upload(live, "twice-1.0.tar.gz", sdist_bytes("twice", "1.0")).status_code == 200
    again = _upload(live, "twice-1.0.zip", zip_sdist_bytes("twice", "1.0"))
    assert again.status_code == 400 and "Only one sdist may be uploaded per release" in again.text
    assert list(listed(live, "twice")) == ["twice-1.0.tar.gz"]
    assert _upload(live, "twice-1.0.tar.gz", sdist_bytes("twice", "1.0")).status_code == 200  # the same again
