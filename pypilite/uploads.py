"""What an upload goes through, cheapest check first, as Warehouse orders them: the form, the filename and
what it claims, the digests, then the archive and its own metadata. Nothing is stored until all of them
pass. The web upload and `import` both end in publish(), so a file gets in through one road only.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping

from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

from pypilite.audit import Actor
from pypilite.dists import (
    SDIST,
    WHEEL,
    FilenameInfo,
    InvalidDistribution,
    check_metadata_version,
    parse_filename,
    read_metadata,
)
from pypilite.errors import BadRequest
from pypilite.repositories.base import UploadOutcome, UploadTarget, VerifiedUpload
from pypilite.storage import TempBlob

log = logging.getLogger(__name__)

# form field -> TempBlob digest name and hex length
DIGEST_FIELDS = {"sha256_digest": ("sha256", 64), "md5_digest": ("md5", 32), "blake2_256_digest": ("blake2_256", 64)}
_HEX = re.compile(r"[0-9a-f]+\Z")


def _check_action(form: Mapping[str, str]) -> None:
    """The request-level fields, checked before the file is looked at."""
    action = form.get(":action")
    if not action:
        raise BadRequest("Missing :action field")
    if action != "file_upload":
        raise BadRequest(f"Unsupported :action {action!r}: only file_upload is available")
    if form.get("protocol_version", "1") != "1":
        raise BadRequest(f"Unknown protocol_version {form.get('protocol_version')!r}")
    if "attestations" in form:
        # PEP 740: an index that cannot verify an attestation must refuse the upload, not drop it.
        raise BadRequest("Attestations are not verified here (PEP 740); upload without them "
                         "(twine without --attestations)")


def verify_upload(form: Mapping[str, str], filename: str | None, blob: TempBlob | None) -> VerifiedUpload:
    """The checks of the legacy upload API: the form's claims against the filename, the digests, the file."""
    _check_action(form)
    name = form.get("name", "").strip()
    version = form.get("version", "").strip()
    filetype = form.get("filetype", "").strip()
    if not name or not version:
        raise BadRequest("Missing name or version field")
    if filetype not in (WHEEL, SDIST):
        raise BadRequest(f"Unsupported filetype {filetype!r}: use bdist_wheel or sdist")
    if blob is None or not filename:
        raise BadRequest("Upload payload does not have a file (the content field)")
    try:
        project = canonicalize_name(name, validate=True)
    except InvalidName:
        raise BadRequest(f"Invalid project name {name!r}") from None
    try:
        form_version = Version(version)
    except InvalidVersion:
        raise BadRequest(f"Invalid version {version!r}: not a PEP 440 version") from None

    if form.get("metadata_version"):
        try:
            check_metadata_version(form["metadata_version"], "the form's")
        except InvalidDistribution as exc:
            raise BadRequest(str(exc)) from None
    info = _parse_filename(filename)
    if info.project != project:
        raise BadRequest(f"Filename {filename!r} does not belong to project {name!r}")
    if info.version != form_version:
        raise BadRequest(f"Filename {filename!r} does not match version {version!r}")
    if info.packagetype != filetype:
        raise BadRequest(f"Filename {filename!r} is not of filetype {filetype!r}")
    _check_not_empty(blob)
    _check_digests(form, blob)
    return _verify_archive(filename, info, blob)


def verify_file(filename: str, blob: TempBlob) -> VerifiedUpload:
    """The same checks for a file that comes without a form (`import`): what the form would claim is what
    the filename says, and the digest is computed, so the filename, the archive and its metadata remain."""
    info = _parse_filename(filename)
    _check_not_empty(blob)
    return _verify_archive(filename, info, blob)


def publish(target: UploadTarget, filename: str | None, blob: TempBlob | None, actor: Actor,
            form: Mapping[str, str] | None = None) -> UploadOutcome:
    """Verify a file and store it in a hosted repository: the one road in, for the web upload (with the form
    it posted) and for `import` (a file alone). Raises a UserError saying why a file is refused."""
    if form is not None:
        dist = verify_upload(form, filename, blob)
    elif blob is None or not filename:
        raise BadRequest("Upload payload does not have a file (the content field)")
    else:
        dist = verify_file(filename, blob)
    outcome = target.upload(dist, actor)
    log.info("upload %s to %s by %s from %s: %s", dist.filename, target.name, actor.name, actor.address,
             outcome.value)
    return outcome


def _parse_filename(filename: str) -> FilenameInfo:
    try:
        return parse_filename(filename)
    except InvalidDistribution as exc:
        raise BadRequest(str(exc)) from None


def _check_not_empty(blob: TempBlob) -> None:
    if blob.size == 0:
        raise BadRequest("Invalid distribution: the file is empty")


def _verify_archive(filename: str, info: FilenameInfo, blob: TempBlob) -> VerifiedUpload:
    blob.flush()
    try:
        metadata = read_metadata(blob.path, info, filename)
    except InvalidDistribution as exc:
        raise BadRequest(str(exc)) from None
    return VerifiedUpload(filename=filename, info=info, metadata=metadata, blob=blob)


def _check_digests(form: Mapping[str, str], blob: TempBlob) -> None:
    computed = blob.digests()
    given = 0
    for field, (algorithm, length) in DIGEST_FIELDS.items():
        value = form.get(field, "").strip().lower()
        if not value:  # uv and twine send some of them empty or not at all
            continue
        if len(value) != length or not _HEX.match(value):
            raise BadRequest(f"Invalid {field}: expected {length} hex digits")
        if not hmac.compare_digest(value, computed[algorithm]):
            raise BadRequest(f"The {field} supplied does not match the uploaded file's {algorithm} digest")
        given += 1
    if not given:
        raise BadRequest("Include at least one message digest (sha256_digest, blake2_256_digest or md5_digest)")
