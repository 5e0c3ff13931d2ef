"""Proxy repositories: serve what was cached from an upstream index, through the same tables as hosted.

Fetching and revalidating upstream pages is the proxy issue's work; until then a proxy serves its cache,
which starts empty, and refuses uploads with a pointer to where they belong.
"""

from __future__ import annotations

from pypilite.errors import BadRequest
from pypilite.repositories.hosted import HostedRepository
from pypilite.repositories.stored import StoredRepository


class ProxyRepository(StoredRepository):
    repository_type = "proxy"

    def upload_target(self) -> HostedRepository:
        raise BadRequest(f"repository {self.name!r} is a proxy of an upstream index; upload to a hosted repository")
