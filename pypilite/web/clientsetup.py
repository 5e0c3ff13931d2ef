"""Copy-paste client configuration for one repository: pip, uv, poetry, pdm, pipenv and twine, with this
server's real address.

The address is `public_url` when it is set, otherwise the one the client used (web/forwarded.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Request

from pypilite.web.forwarded import external

TOKEN = "YOUR_TOKEN"
INDEX_NAME = "pypilite"


@dataclass(frozen=True)
class Snippet:
    id: str
    title: str
    text: str


def base_url(request: Request, public_url: str) -> str:
    """This server's root URL as a client outside should use it, without a trailing slash."""
    if public_url:
        return public_url.rstrip("/")
    address = external(request)
    return f"{address.scheme}://{address.host}{address.prefix.rstrip('/')}"


@dataclass(frozen=True)
class Endpoints:
    index_url: str  # the Simple API root a client installs from
    index_url_with_credentials: str  # the same with placeholders in it, for private repositories
    upload_url: str | None  # where publishing goes; None for a repository that takes no uploads
    host: str  # for pip's --trusted-host, needed only over plain http
    public: bool

    @property
    def install_url(self) -> str:
        return self.index_url if self.public else self.index_url_with_credentials

    @property
    def insecure(self) -> bool:
        return self.index_url.startswith("http://")


def endpoints(root: str, repository: str, public: bool, accepts_uploads: bool) -> Endpoints:
    parts = urlsplit(root)
    index_url = f"{root}/{repository}/simple/"
    return Endpoints(
        index_url=index_url,
        index_url_with_credentials=f"{parts.scheme}://__token__:{TOKEN}@{parts.netloc}{parts.path}/{repository}/simple/",
        upload_url=f"{root}/{repository}/" if accepts_uploads else None,
        host=parts.hostname or "",
        public=public,
    )


def pip_install(urls: Endpoints, requirement: str) -> str:
    trusted = f" --trusted-host {urls.host}" if urls.insecure else ""
    return f"pip install --index-url {urls.install_url}{trusted} {requirement}"


def snippets(urls: Endpoints) -> list[Snippet]:
    """Every client's setup for one repository, in the order people look for them."""
    trusted = f"trusted-host = {urls.host}\n" if urls.insecure else ""
    result = [
        Snippet("pip-cli", "pip, command line", pip_install(urls, "your-package")),
        Snippet("pip-conf", "pip.conf (~/.config/pip/pip.conf; %APPDATA%\\pip\\pip.ini on Windows)",
                f"[global]\nindex-url = {urls.install_url}\n{trusted}"),
        Snippet("uv-cli", "uv, command line", f"uv pip install --index-url {urls.install_url} your-package"),
        Snippet("uv-pyproject", "uv, pyproject.toml", _uv_pyproject(urls)),
        Snippet("poetry", "poetry", _poetry(urls)),
        Snippet("pdm", "pdm, pyproject.toml", _pdm(urls)),
        Snippet("pipenv", "pipenv, Pipfile", _pipenv(urls)),
    ]
    if urls.upload_url is not None:
        result += [
            Snippet("twine-pypirc", "twine, ~/.pypirc",
                    f"[distutils]\nindex-servers = {INDEX_NAME}\n\n[{INDEX_NAME}]\nrepository = {urls.upload_url}\n"
                    f"username = __token__\npassword = {TOKEN}\n"),
            Snippet("twine-cli", "twine, command line", f"twine upload -r {INDEX_NAME} dist/*"),
        ]
    if not urls.public:
        result.append(Snippet("netrc", "~/.netrc (pip and uv send it; keep the URLs above credential-free)",
                              f"machine {urls.host}\nlogin __token__\npassword {TOKEN}\n"))
    return result


def _uv_pyproject(urls: Endpoints) -> str:
    text = f'[[tool.uv.index]]\nname = "{INDEX_NAME}"\nurl = "{urls.index_url}"\ndefault = true\n'
    if urls.upload_url is not None:
        text += f'publish-url = "{urls.upload_url}"\n'
    if not urls.public:
        text += (f"\n# credentials from the environment:\n# UV_INDEX_{INDEX_NAME.upper()}_USERNAME=__token__\n"
                 f"# UV_INDEX_{INDEX_NAME.upper()}_PASSWORD={TOKEN}\n")
    if urls.upload_url is not None:
        text += f"\n# publish: uv publish --index {INDEX_NAME} --username __token__ --password {TOKEN}\n"
    return text


def _poetry(urls: Endpoints) -> str:
    text = f"poetry source add --priority=primary {INDEX_NAME} {urls.index_url}\n"
    if not urls.public:
        text += f"poetry config http-basic.{INDEX_NAME} __token__ {TOKEN}\n"
    if urls.upload_url is not None:
        text += (f"poetry config repositories.{INDEX_NAME}-upload {urls.upload_url}\n"
                 f"poetry publish -r {INDEX_NAME}-upload -u __token__ -p {TOKEN}\n")
    return text


def _verify_ssl(urls: Endpoints) -> str:
    # pdm and pipenv skip an index over plain http unless it is trusted, which verify_ssl = false says.
    return f"verify_ssl = {'false' if urls.insecure else 'true'}\n"


def _pdm(urls: Endpoints) -> str:
    # Named "pypi", the source replaces the index pdm would also ask, so the group's guard holds.
    text = f'[[tool.pdm.source]]\nname = "pypi"\nurl = "{urls.index_url}"\n' + _verify_ssl(urls)
    if not urls.public:
        text += 'username = "__token__"\npassword = "${PYPILITE_TOKEN}"\n'
    if urls.upload_url is not None:
        text += f"\n# publish: pdm publish -r {urls.upload_url} -u __token__ -P {TOKEN}\n"
    return text


def _pipenv(urls: Endpoints) -> str:
    url = urls.index_url if urls.public else urls.index_url_with_credentials.replace(TOKEN, "${PYPILITE_TOKEN}")
    return f'[[source]]\nname = "{INDEX_NAME}"\nurl = "{url}"\n' + _verify_ssl(urls)
