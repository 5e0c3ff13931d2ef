"""Configuration: the embedded defaults, a TOML file and PYPILITE_* variables, merged into one frozen Config.

Read once at start-up and passed around; every mistake becomes a one-line ConfigError naming the key,
because an operator should never have to read a traceback to find a typo in a config file.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import InvalidName, canonicalize_name

from pypilite.durations import parse_duration
from pypilite.policies import Policy, PolicyError, parse_policy

CONFIG_ENV = "PYPILITE_CONFIG"
ENV_PREFIX = "PYPILITE_"

REPOSITORY_TYPES = ("hosted", "proxy", "group")
RESERVED_NAMES = frozenset({"api", "simple", "health", "metrics", "static", "ui", "files", "login"})
_REPO_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")


class ConfigError(Exception):
    """A configuration mistake, worded for the operator in one line."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    public_url: str = ""
    default_repository: str = "all"
    max_upload_mb: int = 1024
    # Behind nginx: its internal location of the blob directory, for X-Accel-Redirect. Empty: pypilite sends.
    x_accel_redirect: str = ""
    # /metrics for anyone who reaches the port; false: global administrators only (a read-only admin token).
    public_metrics: bool = True
    # An upstream page larger than this once decoded (requests unpacks gzip) is refused: 502, or the cached page.
    max_upstream_page_mb: int = 64
    # After an upstream fails, proxies serve their cache alone this long before asking it again (doubling while
    # it keeps failing); 0: ask it on every request (pypilite/breakers.py).
    upstream_backoff: int = 30


@dataclass(frozen=True)
class StorageConfig:
    data_dir: str = "data"
    # /health fails (503, "disk") when the data dir's filesystem has less free space than this.
    min_free_mb: int = 100
    # "local": blobs under data_dir/blobs; "s3": in an S3-compatible bucket (the `s3` extra), spooled in data_dir.
    backend: str = "local"
    bucket: str = ""
    prefix: str = ""  # keys start with it, e.g. "pypilite/"
    endpoint: str = ""  # empty: AWS S3; else the store's URL (MinIO, Ceph, Garage)
    region: str = ""
    # Empty: boto3's own chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role).
    access_key_id: str = ""
    secret_access_key: str = ""
    # "presigned": downloads are redirected to a short-lived URL of the store; empty: pypilite streams them.
    redirect: str = ""


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""


@dataclass(frozen=True)
class AdvisoriesConfig:
    # /health warns when the last `advisories import` is older than this ("90m", "12h", "7d"; "0": never).
    max_age: str = "7d"


@dataclass(frozen=True)
class RepositoryConfig:
    name: str
    repository_type: str
    public: bool = True
    allow_overwrite: bool = False
    remote_url: str = ""
    cache_ttl: int = 600
    remote_timeout: int = 10
    members: tuple[str, ...] = ()
    # Projects a group merges from all members even when a hosted member has them (normalized names).
    pass_through: tuple[str, ...] = ()
    upload_to: str = ""
    # A proxy that serves its cache alone and never asks its upstream.
    offline: bool = False
    # The package firewall's rules (policies.py); None: none.
    policy: Policy | None = None


DEFAULT_REPOSITORIES = (
    RepositoryConfig(name="local", repository_type="hosted"),
    RepositoryConfig(name="pypi", repository_type="proxy"),
    RepositoryConfig(name="all", repository_type="group", members=("local", "pypi"), upload_to="local"),
)


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    advisories: AdvisoriesConfig = field(default_factory=AdvisoriesConfig)
    repositories: tuple[RepositoryConfig, ...] = DEFAULT_REPOSITORIES
    # The keys the config file sets, per repository: only those are compared with the database at start-up.
    written: dict[str, frozenset[str]] = field(default_factory=dict, compare=False)

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir).resolve()

    @property
    def max_upload_bytes(self) -> int:
        return self.server.max_upload_mb * 1024 * 1024

    @property
    def max_upstream_page_bytes(self) -> int:
        return self.server.max_upstream_page_mb * 1024 * 1024

    @property
    def min_free_bytes(self) -> int:
        return self.storage.min_free_mb * 1024 * 1024

    @property
    def advisories_max_age(self) -> int:
        """Seconds; 0: advisories never count as too old."""
        return parse_duration(self.advisories.max_age)


_SECTIONS: dict[str, type] = {"server": ServerConfig, "storage": StorageConfig, "database": DatabaseConfig,
                              "advisories": AdvisoriesConfig}
def validate_repository_name(name: object) -> str:
    """Repository names share the first path segment with the fixed routes, hence the reserved words."""
    if not isinstance(name, str) or not _REPO_NAME.match(name):
        raise ConfigError(f"invalid repository name {name!r}: use lowercase letters, digits, '.', '_' and '-'")
    if name in RESERVED_NAMES:
        raise ConfigError(f"repository name {name!r} is reserved")
    return name


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config from the embedded defaults, then the file (argument or PYPILITE_CONFIG), then the
    environment."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV) or None
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_toml(Path(path))
    return build_config(raw, environ)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}") from None


def build_config(raw: Mapping[str, Any], environ: Mapping[str, str]) -> Config:
    """Validate a parsed TOML document, apply PYPILITE_<SECTION>_<KEY> overrides and freeze the result."""
    unknown = set(raw) - set(_SECTIONS) - {"repository"}
    if unknown:
        raise ConfigError(f"unknown config section or key: {sorted(unknown)[0]}")
    sections = {}
    for section, cls in _SECTIONS.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table")
        values = {name: _typed(f"{section}.{name}", value, _field_type(cls, section, name))
                  for name, value in table.items()}
        values.update(_env_overrides(section, cls, environ))
        sections[section] = cls(**values)
    _reject_unknown_env(environ)

    repositories: tuple[RepositoryConfig, ...] = DEFAULT_REPOSITORIES
    written: dict[str, frozenset[str]] = {}
    if "repository" in raw:
        entries = raw["repository"]
        if not isinstance(entries, list):
            raise ConfigError("repository must be an array of tables: [[repository]]")
        repositories = tuple(parse_repository(entry, f"repository[{i}]") for i, entry in enumerate(entries))
        written = {spec.name: frozenset(entry) - {"name", "format"} for spec, entry in zip(repositories, entries)}
    config = Config(repositories=repositories, written=written, **sections)
    _check_consistency(config)
    return config


def _field_type(cls: type, section: str, name: str) -> type:
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}  # annotations are strings here
    if name not in types:
        raise ConfigError(f"unknown config key: {section}.{name}")
    return {"str": str, "int": int, "bool": bool}[types[name]]


def _typed(key: str, value: Any, expected: type) -> Any:
    # bool is an int subclass in Python; a port of `true` is a mistake, not 1.
    if type(value) is not expected:
        raise ConfigError(f"{key} must be {_TYPE_WORDS[expected]}, not {value!r}")
    if isinstance(value, int) and value < 0:  # true and false are never negative
        raise ConfigError(f"{key} must not be negative")
    return value


_TYPE_WORDS = {str: "a string", int: "an integer", bool: "true or false"}
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _env_overrides(section: str, cls: type, environ: Mapping[str, str]) -> dict[str, Any]:
    values = {}
    for f in dataclasses.fields(cls):
        var = f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}"
        if var not in environ:
            continue
        text = environ[var]
        expected = _field_type(cls, section, f.name)
        if expected is int:
            try:
                value: Any = int(text)
            except ValueError:
                raise ConfigError(f"{var} must be an integer, not {text!r}") from None
        elif expected is bool:
            if text.lower() not in _BOOL_WORDS:
                raise ConfigError(f"{var} must be true or false, not {text!r}")
            value = _BOOL_WORDS[text.lower()]
        else:
            value = text
        values[f.name] = _typed(var, value, expected)
    return values


def _reject_unknown_env(environ: Mapping[str, str]) -> None:
    known = {CONFIG_ENV} | {
        f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}"
        for section, cls in _SECTIONS.items() for f in dataclasses.fields(cls)
    }
    for var in environ:
        if var.startswith(ENV_PREFIX) and var not in known:
            raise ConfigError(f"unknown config variable: {var}")


def _check_storage(storage: StorageConfig) -> None:
    if storage.backend not in ("local", "s3"):
        raise ConfigError(f"storage.backend must be \"local\" or \"s3\", not {storage.backend!r}")
    if storage.backend == "local":
        return
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", storage.bucket):
        raise ConfigError(f"storage.bucket must name an S3 bucket (3-63 lowercase letters, digits, '.', '-'), "
                          f"not {storage.bucket!r}")
    if storage.prefix and not re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/", storage.prefix):
        raise ConfigError(f"storage.prefix must be a key prefix ending with '/', not {storage.prefix!r}")
    if storage.endpoint and not re.fullmatch(r"https?://[^/\s@]+/?", storage.endpoint):
        raise ConfigError("storage.endpoint must be the store's http(s) URL, without a path or credentials")
    if bool(storage.access_key_id) != bool(storage.secret_access_key):
        raise ConfigError("storage.access_key_id and storage.secret_access_key go together: set both or neither")
    if storage.redirect not in ("", "presigned"):
        raise ConfigError(f"storage.redirect must be \"presigned\" or empty, not {storage.redirect!r}")


REPOSITORY_KEYS: dict[str, set[str]] = {
    "hosted": {"public", "allow_overwrite", "policy"},
    "proxy": {"public", "remote_url", "cache_ttl", "remote_timeout", "offline", "policy"},
    "group": {"public", "members", "upload_to", "pass_through", "policy"},
}


def parse_repository(entry: Any, where: str = "repository") -> RepositoryConfig:
    """One repository's settings as the config file, the CLI and the REST API give them."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table")
    try:
        name = validate_repository_name(entry.get("name"))
    except ConfigError as exc:
        raise ConfigError(f"{where}.name: {exc}") from None
    where = f"repository {name!r}"
    kind = entry.get("repository_type")
    if kind not in REPOSITORY_TYPES:
        raise ConfigError(f"{where}: repository_type must be one of {', '.join(REPOSITORY_TYPES)}, not {kind!r}")
    # "format" is what other registries' documents carry; accepting it keeps their snippets working.
    for key in set(entry) - {"name", "repository_type", "format"}:
        if key not in REPOSITORY_KEYS[kind]:
            raise ConfigError(f"{where}: unknown key {key!r} for a {kind} repository")
    if entry.get("format", "pypi") != "pypi":
        raise ConfigError(f"{where}: format must be \"pypi\"")
    values: dict[str, Any] = {}
    types = {f.name: str(f.type) for f in dataclasses.fields(RepositoryConfig)}
    for key in REPOSITORY_KEYS[kind]:
        if key not in entry:
            continue
        value = entry[key]
        if key in ("members", "pass_through"):
            if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
                raise ConfigError(f"{where}: {key} must be a list of names")
            values[key] = tuple(value) if key == "members" else _project_names(where, value)
        elif key == "policy":
            try:
                values[key] = parse_policy(value, where, kind) if value is not None else None
            except PolicyError as exc:
                raise ConfigError(str(exc)) from None
        else:
            values[key] = _typed(f"{where}: {key}", value, {"str": str, "int": int, "bool": bool}[types[key]])
    spec = RepositoryConfig(name=name, repository_type=kind, **values)
    if spec.remote_url and not re.match(r"https?://[^/\s]+\S*\Z", spec.remote_url):
        raise ConfigError(f"{where}: remote_url must be an http(s) URL of a simple index")  # it may hold a token
    if spec.remote_timeout < 1:
        raise ConfigError(f"{where}: remote_timeout must be at least 1 second")
    return spec


def _project_names(where: str, names: list[str]) -> tuple[str, ...]:
    try:
        return tuple(sorted({canonicalize_name(name, validate=True) for name in names}))
    except InvalidName as exc:
        raise ConfigError(f"{where}: pass_through: {exc}") from None


def _check_consistency(config: Config) -> None:
    if not 1 <= config.server.port <= 65535:
        raise ConfigError(f"server.port must be between 1 and 65535, not {config.server.port}")
    if config.server.max_upload_mb < 1:
        raise ConfigError("server.max_upload_mb must be at least 1")
    if config.server.max_upstream_page_mb < 1:
        raise ConfigError("server.max_upstream_page_mb must be at least 1")
    if config.server.public_url and not re.match(r"https?://[^/]+", config.server.public_url):
        raise ConfigError(f"server.public_url must be an http(s) URL, not {config.server.public_url!r}")
    accel = config.server.x_accel_redirect
    if accel and not re.fullmatch(r"/[A-Za-z0-9._~/-]*/", accel):
        raise ConfigError(f"server.x_accel_redirect must be a path starting and ending with '/', not {accel!r}")
    if config.database.url and not config.database.url.startswith(("sqlite:", "postgresql:", "postgres:")):
        raise ConfigError(f"database.url must be sqlite:/// or postgresql://, not {config.database.url!r}")
    if not config.storage.data_dir:
        raise ConfigError("storage.data_dir must not be empty")
    _check_storage(config.storage)
    try:
        parse_duration(config.advisories.max_age)
    except ValueError as exc:
        raise ConfigError(f"advisories.max_age must be {exc}") from None
    names = set()
    for repo in config.repositories:
        if repo.name in names:
            raise ConfigError(f"repository {repo.name!r} is defined twice")
        names.add(repo.name)
    if config.server.default_repository:
        try:
            validate_repository_name(config.server.default_repository)
        except ConfigError as exc:
            raise ConfigError(f"server.default_repository: {exc}") from None
