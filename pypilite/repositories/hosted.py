"""Hosted repositories: the team's own packages, published with twine and friends."""

from __future__ import annotations

from pypilite import audit, markers, models, serials
from pypilite.audit import Actor
from pypilite.database import write_transaction
from pypilite.dists import SDIST
from pypilite.errors import BadRequest, Conflict
from pypilite.models import File, Project, Tombstone
from pypilite.repositories.base import UploadOutcome, UploadTarget, VerifiedUpload
from pypilite.repositories.stored import StoredRepository


class HostedRepository(StoredRepository, UploadTarget):
    repository_type = "hosted"

    def upload(self, dist: VerifiedUpload, actor: Actor) -> UploadOutcome:
        """Store the verified file: blob first (durable), then the row, so no row ever lacks its blob."""
        self._refuse_closed_project(dist)
        self._refuse_reused_name(dist.filename)
        existing = self._query_file_row(dist.filename)
        if existing is not None and self._is_duplicate(existing, dist):
            return UploadOutcome.IDENTICAL
        self._refuse_second_sdist(dist, existing)
        sha256 = self.blobs.commit(dist.blob)
        metadata_sha256 = None
        if dist.metadata.core_metadata is not None:
            metadata_sha256 = self.blobs.put_bytes(dist.metadata.core_metadata)
        info_sha256 = metadata_sha256 or self.blobs.put_bytes(dist.metadata.raw)
        with write_transaction():
            # Checked again under the write lock: another worker may have stored the same name meanwhile.
            existing = self._query_file_row(dist.filename)
            if existing is not None and self._is_duplicate(existing, dist):
                return UploadOutcome.IDENTICAL
            self._refuse_second_sdist(dist, existing)
            self._refuse_closed_project(dist)
            project, created = self._project_for_upload(dist)
            values = dict(
                project=project.id,
                filename=dist.filename,
                version=str(dist.info.version),
                packagetype=dist.info.packagetype,
                sha256=sha256,
                size=dist.blob.size,
                upload_time=models.utcnow(),
                uploader=actor.name,
                requires_python=dist.metadata.requires_python,
                metadata_sha256=metadata_sha256,
                info_sha256=info_sha256,
            )
            if existing is not None:
                File.update(**values).where(File.id == existing.id).execute()
            else:
                File.insert(**values).execute()
            serials.projects_changed(project.id)
            outcome = UploadOutcome.REPLACED if existing is not None else UploadOutcome.STORED
            audit.record(actor, "file.upload", "file", f"{self.name}/{dist.filename}",
                         sha256=sha256, size=dist.blob.size, outcome=outcome.value)
        return outcome

    def _refuse_closed_project(self, dist: VerifiedUpload) -> None:
        """PEP 792: an archived or quarantined project takes no new distributions (an identical re-upload
        included: twine --skip-existing must not read as a success)."""
        project = Project.get_or_none((Project.repository == self.id) & (Project.name == str(dist.info.project)))
        if project is not None and project.status in markers.CLOSED_TO_UPLOADS:
            reason = f": {project.status_reason}" if project.status_reason else ""
            raise BadRequest(f"Project {dist.info.project} is {project.status} in repository {self.name!r} and "
                             f"takes no new files{reason}")

    def _refuse_reused_name(self, filename: str) -> None:
        if self.row.allow_overwrite:
            return
        if Tombstone.select().where((Tombstone.repository == self.id) & (Tombstone.filename == filename)).exists():
            raise BadRequest(f"This filename has already been used: {filename} was deleted from repository "
                             f"{self.name!r} and cannot be uploaded again; use a different version")

    def _refuse_second_sdist(self, dist: VerifiedUpload, existing: File | None) -> None:
        """One sdist per release, as on PyPI: installers take whichever they meet first, and two sources for
        one version may build two different things."""
        if dist.info.packagetype != SDIST or existing is not None:
            return
        other = (File.select(File.filename).join(Project)
                 .where((Project.repository == self.id) & (Project.name == str(dist.info.project))
                        & (File.version == str(dist.info.version)) & (File.packagetype == SDIST)).first())
        if other is not None:
            raise BadRequest(f"Only one sdist may be uploaded per release: {dist.info.project} {dist.info.version} "
                             f"has {other.filename} already")

    def _is_duplicate(self, existing: File, dist: VerifiedUpload) -> bool:
        """True for a byte-identical re-upload; raises for other bytes under the same name."""
        if existing.sha256 == dist.blob.sha256:
            return True
        if not self.row.allow_overwrite:
            raise Conflict(
                f"File already exists: {dist.filename} is in repository {self.name!r} with other contents "
                f"(sha256 {existing.sha256})"
            )
        return False

    def _project_for_upload(self, dist: VerifiedUpload) -> tuple[Project, bool]:
        """The project the upload goes into, and whether it was created for it."""
        name = str(dist.info.project)
        project = Project.get_or_none((Project.repository == self.row.id) & (Project.name == name))
        if project is not None:
            return project, False
        # No IntegrityError to recover from: the write lock (write_transaction) keeps others out since the lookup.
        project = Project.create(repository=self.row.id, name=name, display_name=dist.metadata.name)
        serials.names_changed(self.row.id)
        return project, True
