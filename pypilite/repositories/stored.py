"""Reads shared by the kinds whose files live in pypilite's own tables: hosted, and proxy (which fills the
same tables from upstream), so a cached proxy project renders exactly like a hosted one."""

from __future__ import annotations

import hashlib
from collections.abc import Collection

from pypilite import markers, models
from pypilite.database import columns, database, first, from_row, sql
from pypilite.markers import Markers
from pypilite.models import File, Project
from pypilite.repositories.base import (
    NO_PAGE,
    BlobRef,
    DistFile,
    Outline,
    PageTag,
    ProjectIndex,
    ProjectPage,
    Repository,
    sort_files,
)
from pypilite.storage import BlobStore

PROJECT = Project._meta.table_name
FILE = File._meta.table_name
# A project's releases with their file counts and last uploads; none for a quarantined project, as its page.
_OUTLINES = (f'SELECT p.name, f.version, f.yanked, COUNT(f.id), MAX(f.upload_time) FROM "{PROJECT}" p '
             f'LEFT JOIN "{FILE}" f ON f.project_id = p.id AND p.status != \'{markers.QUARANTINED}\' '
             "WHERE p.repository_id = ? AND p.name IN ({}) GROUP BY p.name, f.version, f.yanked")
_FILES_OF_PROJECT = f'SELECT {columns(File, "f")} FROM "{FILE}" f WHERE f.project_id = ?'
# CROSS JOIN pins SQLite's join order (file name, then project) whatever ANALYZE says, and with its condition in
# WHERE PostgreSQL reads it too; no quarantined files (PEP 792).
_FILE_BY_NAME = (f'SELECT {columns(File, "f")} FROM "{FILE}" f CROSS JOIN "{PROJECT}" p WHERE p.id = f.project_id '
                 f"AND p.repository_id = ? AND f.filename = ? AND p.status != '{markers.QUARANTINED}'")


class StoredRepository(Repository):
    def __init__(self, row: models.Repository, blobs: BlobStore, etag_key: bytes) -> None:
        super().__init__(row.id, row.name, row.public)
        self.row = row
        self.blobs = blobs
        self._etag_key = etag_key
        self._file_rows: dict[str, File | None] = {}

    def index_etag(self) -> str:
        return self._etag(self.row.serial)

    def index_serial(self) -> int:
        return self.row.serial

    def project_index(self) -> ProjectIndex:
        names = tuple(p.name for p in Project.select(Project.name)
                      .where(Project.repository == self.row.id).order_by(Project.name))
        return ProjectIndex(names=names, etag=self.index_etag(), serial=self.row.serial)

    def has_project(self, name: str) -> bool:
        return Project.select().where((Project.repository == self.row.id) & (Project.name == name)).exists()

    def project_status(self, name: str) -> str | None:
        row = Project.select(Project.status).where(
            (Project.repository == self.row.id) & (Project.name == name)).first()
        return row.status if row is not None else None

    def page_tag(self, name: str) -> PageTag | None:
        row = database.execute_sql(sql(f'SELECT id, serial FROM "{PROJECT}" WHERE repository_id = ? AND name = ?'),
                                   (self.id, name)).fetchone()
        return PageTag(self._page_etag(*row), serial=row[1]) if row is not None else NO_PAGE

    def _page_etag(self, project_id: int, serial: int) -> str:
        return self._etag(project_id, serial)

    def _etag(self, *state: int) -> str:
        """An ETag from never-reused ids and serials, hashed with the data dir's secret key (a new one for a
        restored copy): it matches no other page's, and tells a reader nothing of how many projects there are
        or when a private one changed."""
        names = ".".join(map(str, (self.id, *state))).encode()
        return hashlib.blake2b(names, key=self._etag_key, digest_size=16).hexdigest()

    def project_page(self, name: str) -> ProjectPage | None:
        project = first(Project.raw(sql(f'SELECT * FROM "{PROJECT}" WHERE repository_id = ? AND name = ?'),
                                    self.id, name))
        if project is None:
            return None
        found = Markers(project.status, project.status_reason, markers.from_lines(project.tracks),
                        markers.from_lines(project.alternate_locations))
        files = []
        if project.status != markers.QUARANTINED:  # PEP 792: a quarantined project offers no files
            rows = database.execute_sql(sql(_FILES_OF_PROJECT), (project.id,)).fetchall()
            files = [self._dist_file(from_row(File, values)) for values in rows]
        return ProjectPage(name=project.name, files=sort_files(files), etag=self._page_etag(project.id, project.serial),
                           markers=found, serial=project.serial)

    def outlines(self, names: Collection[str]) -> dict[str, Outline]:
        """The stored projects' outlines in one query, without building their pages; for a proxy too, whose
        cached_page this reads."""
        if not names:
            return {}
        rows = database.execute_sql(sql(_OUTLINES.format(", ".join("?" for _ in names))), (self.id, *names)).fetchall()
        found: dict[str, list[tuple[str | None, bool, int, str | None]]] = {}
        for name, version, yanked, files, last_upload in rows:
            found.setdefault(name, []).append((version, yanked, files, last_upload))
        return {name: Outline(
            releases=frozenset((version, bool(yanked)) for version, yanked, _files, _last in releases if version),
            files=sum(files for _version, _yanked, files, _last in releases),
            last_upload=File.upload_time.python_value(max((last for *_rest, last in releases if last), default=None)),
        ) for name, releases in found.items()}

    def _query_file_row(self, filename: str) -> File | None:
        values = database.execute_sql(sql(_FILE_BY_NAME), (self.id, filename)).fetchone()
        return from_row(File, values) if values is not None else None

    def _file_row(self, filename: str) -> File | None:
        """For reads: a download asks about its file twice (dist_file, then open_file), and a repository
        object lives for one request, so the first answer serves both. Writes use _query_file_row."""
        if filename not in self._file_rows:
            self._file_rows[filename] = self._query_file_row(filename)
        return self._file_rows[filename]

    def dist_file(self, filename: str) -> DistFile | None:
        row = self._file_row(filename)
        return self._dist_file(row) if row is not None else None

    def open_file(self, filename: str) -> BlobRef | None:
        return self._blob_ref(filename, metadata=False)

    def open_metadata(self, filename: str) -> BlobRef | None:
        return self._blob_ref(filename, metadata=True)

    def stored_blob(self, filename: str, metadata: bool = False) -> BlobRef | None:
        ref = self._blob_ref(filename, metadata)
        return ref if ref is not None and self.blobs.exists(ref.sha256) else None

    def _blob_ref(self, filename: str, metadata: bool) -> BlobRef | None:
        """Where the row says the file's (or its metadata's) bytes are, whether or not they are there."""
        row = self._file_row(filename)
        if row is None:
            return None
        if not metadata:
            return BlobRef(row.sha256, row.filename)
        metadata_sha256 = self._core_metadata(row)
        if metadata_sha256 is None:
            return None
        return BlobRef(metadata_sha256, f"{row.filename}.metadata")

    def _core_metadata(self, row: File) -> str | None:
        """The sha256 of the PEP 658 metadata the repository offers for a file."""
        return row.metadata_sha256

    def _dist_file(self, row: File) -> DistFile:
        return DistFile(
            repository=self.name,
            filename=row.filename,
            version=row.version,
            packagetype=row.packagetype,
            sha256=row.sha256,
            size=row.size,
            upload_time=row.upload_time,
            requires_python=row.requires_python,
            yanked=row.yanked,
            yanked_reason=row.yanked_reason,
            metadata_sha256=self._core_metadata(row),
            uploader=row.uploader,
            info_sha256=row.info_sha256,
            provenance=bool(row.provenance_url),
        )
