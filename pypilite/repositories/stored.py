"""Reads shared by the kinds whose files live in pypilite's own tables: hosted, and proxy (which fills the
same tables from upstream), so a cached proxy project renders exactly like a hosted one."""

from __future__ import annotations

import hashlib
from collections.abc import Collection

from pypilite import markers, models
from pypilite.markers import Markers
from pypilite.models import File, Project, columns, database, first, from_row
from pypilite.repositories.base import (
    NO_PAGE,
    BlobRef,
    DistFile,
    PageTag,
    ProjectIndex,
    ProjectPage,
    Repository,
    sort_files,
)
from pypilite.storage import BlobStore


PROJECT = Project._meta.table_name
FILE = File._meta.table_name
_PROJECT_COLUMNS = columns(Project, "p")
_FILES_OF_PROJECT = f'SELECT {columns(File, "f")} FROM "{FILE}" f WHERE f.project_id = ?'
# CROSS JOIN pins SQLite's join order, from the file's name to its project, whatever statistics an ANALYZE
# leaves behind: the other order walks every project of the repository, and a download's cost would grow with
# the catalogue. A quarantined project's files are not there for anyone (PEP 792).
_FILE_BY_NAME = (f'SELECT {columns(File, "f")} FROM "{FILE}" f CROSS JOIN "{PROJECT}" p ON p.id = f.project_id '
                 f"WHERE p.repository_id = ? AND f.filename = ? AND p.status != '{markers.QUARANTINED}'")


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

    def page_tag(self, name: str) -> PageTag | None:
        row = database.execute_sql(f'SELECT id, serial FROM "{PROJECT}" WHERE repository_id = ? AND name = ?',
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
        project = first(Project.raw(f'SELECT * FROM "{PROJECT}" WHERE repository_id = ? AND name = ?',
                                    self.id, name))
        if project is None:
            return None
        rows = []
        if project.status != markers.QUARANTINED:
            rows = database.execute_sql(_FILES_OF_PROJECT, (project.id,)).fetchall()
        return self._page(project, [from_row(File, values) for values in rows])

    def cached_pages(self, names: Collection[str]) -> dict[str, ProjectPage]:
        """The stored pages of several projects in one query; for a proxy too, whose cached_page this is."""
        if not names:
            return {}
        placeholders = ", ".join("?" for _ in names)
        cursor = database.execute_sql(
            f'SELECT {_PROJECT_COLUMNS}, {columns(File, "f")} FROM "{PROJECT}" p LEFT JOIN "{FILE}" f '
            f"ON f.project_id = p.id AND p.status != '{markers.QUARANTINED}' "
            f"WHERE p.repository_id = ? AND p.name IN ({placeholders})", (self.id, *names))
        projects: dict[int, tuple[Project, list[File]]] = {}
        width = len(Project._meta.sorted_fields)
        for values in cursor.fetchall():
            project, files = projects.setdefault(values[0], (from_row(Project, values[:width]), []))
            if values[width] is not None:
                files.append(from_row(File, values[width:]))
        return {project.name: self._page(project, files) for project, files in projects.values()}

    def _page(self, project: Project, rows: list[File]) -> ProjectPage:
        """A project's page from its row and its file rows (none when quarantined: PEP 792 offers no files)."""
        found = Markers(project.status, project.status_reason, markers.from_lines(project.tracks),
                        markers.from_lines(project.alternate_locations))
        files = [self._dist_file(row) for row in rows] if project.status != markers.QUARANTINED else []
        return ProjectPage(name=project.name, files=sort_files(files), etag=self._page_etag(project.id, project.serial),
                           markers=found, serial=project.serial)

    def _query_file_row(self, filename: str) -> File | None:
        values = database.execute_sql(_FILE_BY_NAME, (self.id, filename)).fetchone()
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
        return ref if ref is not None and ref.path.is_file() else None

    def _blob_ref(self, filename: str, metadata: bool) -> BlobRef | None:
        """Where the row says the file's (or its metadata's) bytes are, whether or not they are there."""
        row = self._file_row(filename)
        if row is None:
            return None
        if not metadata:
            return BlobRef(self.blobs.path(row.sha256), row.sha256, row.filename)
        metadata_sha256 = self._core_metadata(row)
        if metadata_sha256 is None:
            return None
        return BlobRef(self.blobs.path(metadata_sha256), metadata_sha256, f"{row.filename}.metadata")

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
