"""Uploads the standards say an index must refuse, refused with a one-line reason the publisher shows."""

from __future__ import annotations

from pathlib import Path

from tests.distfactory import wheel_bytes
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
