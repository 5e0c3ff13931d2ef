"""The one interface every kind of repository offers, the plain page model the renderers consume, and what
an upload hands to the repository it lands in (UploadTarget).

The Simple API, the files route and (later) the UI and REST API only ever hold a Repository; none of them
asks which kind it is.
"""

from __future__ import annotations

import enum
import functools
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from packaging.version import InvalidVersion, Version

from pypilite.audit import Actor
from pypilite.dists import DistMetadata, FilenameInfo
from pypilite.errors import BadRequest
from pypilite.markers import NONE, Markers
from pypilite.policies import Decision
from pypilite.storage import TempBlob


@dataclass(frozen=True)
class DistFile:
    repository: str  # the repository that stores the file, which its URL names (a group's files live in members)
    filename: str
    version: str
    packagetype: str
    sha256: str
    size: int | None  # None only for a proxied file whose upstream did not say
    upload_time: datetime | None
    requires_python: str
    yanked: bool
    yanked_reason: str
    metadata_sha256: str | None
    uploader: str
    # The metadata the UI shows, extracted when this repository stored or fetched the file; None until then.
    info_sha256: str | None = None
    # PEP 740: whether the repository can serve the file's provenance (a proxy whose upstream offers it).
    provenance: bool = False


@dataclass(frozen=True)
class ProjectPage:
    name: str
    files: tuple[DistFile, ...]
    etag: str
    # Why the page may be out of date (a proxy serving its cache while the upstream fails); empty when fresh.
    stale: str = ""
    markers: Markers = NONE
    # The project's change counter in this repository's tables; None where no one counter describes the page.
    serial: int | None = None

    @functools.cached_property
    def versions(self) -> tuple[str, ...]:
        return tuple(sorted({f.version for f in self.files}, key=version_key))

    def latest_version(self) -> str:
        """What pip would pick, as Warehouse's JSON API and our UI show it: the highest final release not
        yanked, else the highest not yanked, else the highest."""
        live = sorted({f.version for f in self.files if not f.yanked}, key=version_key)
        final = [v for v in live if not _is_prerelease(v)]
        return (final or live or list(self.versions))[-1]


@dataclass(frozen=True)
class Outline:
    """What a listing shows of a project's page: its releases (version, yanked) as its files say them, how
    many files, and the last upload."""

    releases: frozenset[tuple[str, bool]]
    files: int
    last_upload: datetime | None


def outline(page: ProjectPage) -> Outline:
    return Outline(releases=frozenset((f.version, f.yanked) for f in page.files), files=len(page.files),
                   last_upload=max((f.upload_time for f in page.files if f.upload_time is not None), default=None))


@dataclass(frozen=True)
class ProjectIndex:
    names: tuple[str, ...]
    etag: str
    serial: int | None = None


@dataclass(frozen=True)
class BlobRef:
    """A blob to send: from the blob store, or (a proxy's first fetch) as `stream` while it is stored."""

    sha256: str
    download_name: str
    stream: Iterable[bytes] | None = None
    size: int | None = None


def _is_prerelease(version: str) -> bool:
    try:
        return Version(version).is_prerelease
    except InvalidVersion:
        return True


def version_key(version: str) -> tuple[int, Version | str]:
    """Sort key for versions: PEP 440 order, with anything unparseable (old upstream files) first."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def sort_files(files: list[DistFile]) -> tuple[DistFile, ...]:
    return tuple(sorted(files, key=lambda f: (version_key(f.version), f.filename)))


@dataclass(frozen=True)
class PageTag:
    """What page_tag knows of a page without building it: its ETag (None: there is no such page), and until
    when that holds if the database does not change (a proxy's cached answer goes stale on its own; None:
    only a change ends it)."""

    etag: str | None
    until: datetime | None = None
    serial: int | None = None


# What page_tag answers when the repository knows, for good, that it has no such project.
NO_PAGE = PageTag(None)


class Repository(ABC):
    repository_type: str

    def __init__(self, id: int, name: str, public: bool) -> None:
        self.id = id
        self.name = name
        self.public = public

    @abstractmethod
    def project_index(self) -> ProjectIndex:
        """Every project name the repository can serve: the root of its Simple API."""

    def index_etag(self) -> str | None:
        """The ETag project_index() would carry, found without listing anything; None when unknown."""
        return None

    def index_serial(self) -> int | None:
        """The serial project_index() would carry: a counter of changes to the project names, where the
        repository keeps one (a group does not: its members' counters are independent of each other)."""
        return None

    def page_tag(self, name: str) -> PageTag | None:
        """The ETag project_page(name) would carry, found without building the page (a tag without an ETag
        when the page would be None); None when neither can be known cheaply (the page must then be built)."""
        return None

    @abstractmethod
    def project_page(self, name: str) -> ProjectPage | None:
        """The files of one project (by normalized name), or None when the repository has none."""

    def leaves(self) -> list[Repository]:
        """The repositories whose own tables hold what this one serves to its reader: itself, or a group's
        readable members."""
        return [self]

    def has_project(self, name: str) -> bool:
        """Whether the repository holds the project, asking no upstream."""
        return self.cached_page(name) is not None

    def project_status(self, name: str) -> str | None:
        """The project's PEP 792 status ("" where none was said), None when not held; asking no upstream."""
        page = self.cached_page(name)
        return page.markers.status if page is not None else None

    def source(self, member: str, project: str) -> Repository | None:
        """The repository whose files of `project` this one's pages list under the name `member` (itself, or
        a group's member), if its pages list them from there: what a file URL under this index may serve."""
        return self if member == self.name else None

    def cached_page(self, name: str) -> ProjectPage | None:
        """project_page(name) from what this server already holds, never asking an upstream: what the web UI
        shows, so browsing stays fast and never fetches on anyone's behalf."""
        return self.project_page(name)

    def outlines(self, names: Collection[str]) -> dict[str, Outline]:
        """outline(cached_page(name)) for each of several names, those without a page left out: what a listing
        of many projects shows, found without building their pages where the repository can."""
        return {name: outline(page) for name in names if (page := self.cached_page(name)) is not None}

    @abstractmethod
    def dist_file(self, filename: str) -> DistFile | None:
        """What the repository knows about a distribution file, without fetching or opening it."""

    @abstractmethod
    def open_file(self, filename: str) -> BlobRef | None:
        """The distribution file to send, or None when this repository does not hold it."""

    @abstractmethod
    def open_metadata(self, filename: str) -> BlobRef | None:
        """The PEP 658 metadata of a distribution file, or None when there is none."""

    def open_provenance(self, filename: str) -> bytes | None:
        """The PEP 740 provenance of a distribution file, or None when the repository offers none."""
        return None

    @abstractmethod
    def stored_blob(self, filename: str, metadata: bool = False) -> BlobRef | None:
        """The blob in the store this repository may hand out for a distribution file (or its PEP 658
        metadata) without fetching anything: what nginx may send in its place. None when there is none: a
        proxy hands out only bytes it fetched from its own upstream and verified, whatever else is stored."""

    def underlying(self) -> Repository:
        """The repository without the policy in front of it (policed.py): what kind-specific management reaches."""
        return self

    def refusal(self, dist: DistFile, project: str, metadata: bool = False) -> str | None:
        """Why this repository's policy refuses to hand out a file (or its core metadata); None: it does not."""
        return None

    def decisions(self, name: str, cached: bool = True) -> list[tuple[Repository, DistFile, Decision]]:
        """Each file of a project that a policy blocks (or would, in report mode), with the repository whose
        policy decided and why: what the UI, the API and `policy explain` show."""
        return []

    def upload_target(self) -> UploadTarget:
        """The repository an upload addressed to this one lands in."""
        raise BadRequest(f"repository {self.name!r} ({self.repository_type}) does not accept uploads")


@dataclass(frozen=True)
class VerifiedUpload:
    """A distribution file that passed every check of the upload pipeline (pypilite.uploads)."""

    filename: str
    info: FilenameInfo
    metadata: DistMetadata
    blob: TempBlob


class UploadOutcome(enum.Enum):
    STORED = "stored"
    IDENTICAL = "identical"  # the same bytes under the same name were already there: nothing changed
    REPLACED = "replaced"


class UploadTarget(Repository):
    """A repository that stores the files uploaded to it: what upload_target() answers."""

    def upload_target(self) -> UploadTarget:
        return self

    @abstractmethod
    def upload(self, dist: VerifiedUpload, actor: Actor) -> UploadOutcome:
        """Store a verified file, or raise a UserError saying why not."""
