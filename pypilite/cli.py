"""The command line behind app.py: the same service functions the web doors call, one line per mistake."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import click
import peewee as pw

from pypilite import (
    StartupError,
    advisories,
    advisory_sources,
    blobcopy,
    breakers,
    grants,
    importer,
    loops,
    maintenance,
    moving,
    packages,
    policies,
    policy_admin,
    repository_admin,
    serving,
    tokens,
    users,
)
from pypilite import backup as backups
from pypilite.access import LEVELS
from pypilite.audit import Actor
from pypilite.config import Config, ConfigError, load_config, parse_repository
from pypilite.database import database
from pypilite.errors import UserError
from pypilite.markers import STATUSES
from pypilite.services import Services, open_blob_store, open_services
from pypilite.storage import LocalBlobStore
from pypilite.upstream import UpstreamError, redact

MAX_POLICY_FILE = 2**20
CONFIG_HELP = "TOML config file (default: $PYPILITE_CONFIG, else the embedded defaults)"


def config_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)(command)


def command_config(config_path: str | None) -> Config:
    """The config a command names, else the one named before the command (`app.py --config FILE repo list`)."""
    given_first = click.get_current_context().find_root().params.get("config_path")
    return load_config(config_path or given_first)


def existing_data_dir(config: Config) -> Config:
    """Only serving creates a data dir: a command run from another directory, or with a config it did not
    mean, must not quietly start a new, empty index."""
    if not config.data_dir.is_dir():
        raise click.ClickException(f"no data dir at {config.data_dir}: start the server once to create it, "
                                   "or name the index's config with --config FILE")
    return config


def with_database(command: Callable[..., Any]) -> Callable[..., Any]:
    """Open the services on the data dir the config names (migrating it as the server would) around a command,
    without the web layer."""
    @config_option
    @functools.wraps(command)
    def wrapper(config_path: str | None, **kwargs: Any) -> Any:
        opened = open_services(existing_data_dir(command_config(config_path)))
        click.get_current_context().meta[_SERVICES] = opened
        with database.connection_context():
            return command(**kwargs)
    return wrapper


_SERVICES = "pypilite.services"


def services() -> Services:
    """The services the running command opened (with_database)."""
    return click.get_current_context().meta[_SERVICES]


DEV_OPTION = click.option("--dev", is_flag=True,
                          help="werkzeug's development server (one process) instead of gunicorn")


@click.group(invoke_without_command=True)
@config_option
@DEV_OPTION
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, dev: bool) -> None:
    """pypilite: a private Python package index. Without a command: serve."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve, config_path=config_path, dev=dev)
    elif dev:
        raise click.UsageError("--dev goes with serving: `pypilite --dev` or `pypilite serve --dev`")


@cli.command()
@config_option
@click.option("--host", help="address to listen on (default: server.host)")
@click.option("--port", type=click.IntRange(1, 65535), help="port to listen on (default: server.port)")
@DEV_OPTION
def serve(config_path: str | None = None, host: str | None = None, port: int | None = None,
          dev: bool = False) -> None:
    """Serve with gunicorn (workers from the cores) until Ctrl-C or SIGTERM; --dev for werkzeug's server."""
    config = command_config(config_path)
    server = dataclasses.replace(config.server, host=host or config.server.host, port=port or config.server.port)
    serving.serve(dataclasses.replace(config, server=server), dev=dev)


@cli.group()
def repo() -> None:
    """Manage repositories."""


@repo.command("add")
@click.argument("name")
@click.option("--type", "repository_type", required=True, type=click.Choice(["hosted", "proxy", "group"]))
@click.option("--private", is_flag=True, help="require credentials to read")
@click.option("--allow-overwrite", is_flag=True, default=None, help="hosted: accept other bytes under a stored name")
@click.option("--remote-url", help="proxy: the upstream's simple root")
@click.option("--cache-ttl", type=int, help="proxy: seconds a cached page counts as fresh")
@click.option("--remote-timeout", type=int, help="proxy: seconds to wait for the upstream")
@click.option("--offline", type=click.BOOL, help="proxy: true: serve the cache alone, never asking the upstream")
@click.option("--member", "members", multiple=True, help="group: a member repository (repeat, in order)")
@click.option("--upload-to", help="group: the hosted member uploads land in")
@click.option("--pass-through", "pass_through", multiple=True,
              help="group: a project merged from every member even when a hosted member has it (repeat)")
@with_database
def repo_add(name: str, repository_type: str, private: bool, **options: Any) -> None:
    """Add a repository; the running server serves it at once."""
    entry: dict[str, Any] = {"name": name, "repository_type": repository_type}
    if private:
        entry["public"] = False
    entry.update({key: list(value) if key in ("members", "pass_through") else value
                  for key, value in options.items() if value not in (None, ())})
    repository_admin.create_repository(parse_repository(entry), Actor.command_line())
    click.echo(f"created {repository_type} repository {name!r}")


@repo.command("update")
@click.argument("name")
@click.option("--public/--private", default=None, help="anyone may read / credentials needed to read")
@click.option("--allow-overwrite/--no-allow-overwrite", default=None,
              help="hosted: accept other bytes under a stored name")
@click.option("--remote-url", help="proxy: the upstream's simple root")
@click.option("--cache-ttl", type=int, help="proxy: seconds a cached page counts as fresh")
@click.option("--remote-timeout", type=int, help="proxy: seconds to wait for the upstream")
@click.option("--offline", type=click.BOOL, help="proxy: true: serve the cache alone, never asking the upstream")
@click.option("--member", "members", multiple=True, help="group: the members, all of them, in order (repeat)")
@click.option("--upload-to", help="group: the hosted member uploads land in ('' for none)")
@click.option("--pass-through", "pass_through", multiple=True, help="group: the pass-through projects (repeat)")
@click.option("--no-pass-through", is_flag=True, help="group: no pass-through projects")
@with_database
def repo_update(name: str, no_pass_through: bool, **options: Any) -> None:
    """Change a repository's settings (what the API's PATCH changes); the running server serves them at once."""
    changes = {key: list(value) if key in ("members", "pass_through") else value
               for key, value in options.items() if value not in (None, ())}
    if no_pass_through:
        if "pass_through" in changes:
            raise click.UsageError("--pass-through and --no-pass-through contradict each other")
        changes["pass_through"] = []
    if not changes:
        raise click.UsageError("nothing to change: name at least one setting (see --help)")
    repository_admin.update_repository(name, changes, Actor.command_line())
    click.echo(f"updated repository {name!r}: {', '.join(sorted(changes))}")


@repo.command("list")
@with_database
def repo_list() -> None:
    """List repositories."""
    _header("NAME", "TYPE", "ACCESS", "SETTINGS")
    for spec in repository_admin.list_repositories():
        details = {
            "hosted": f"allow_overwrite={str(spec.allow_overwrite).lower()}",
            "proxy": f"remote_url={_upstream(spec.remote_url)} cache_ttl={spec.cache_ttl}"
                     f" remote_timeout={spec.remote_timeout} offline={str(spec.offline).lower()}"
                     f" {_breaker(spec.name)}",
            "group": f"members={','.join(spec.members)} upload_to={spec.upload_to or '-'}"
                     f" pass_through={','.join(spec.pass_through) or '-'}",
        }[spec.repository_type]
        click.echo(f"{spec.name}\t{spec.repository_type}\t{'public' if spec.public else 'private'}\t{details}")


def _header(*columns: str) -> None:
    """A list's first line names its tab-separated columns (`tail -n +2` skips it)."""
    click.echo("\t".join(columns))


def _breaker(name: str) -> str:
    shown = breakers.summary(services().repositories.breaker_state(name))
    if shown["breaker"] == breakers.CLOSED:
        return "upstream=ok"
    return (f"upstream={shown['breaker']} (failed {shown['failures']} times, asked again in {shown['retry_in']} s:"
            f" {shown['reason']})")


def _upstream(remote_url: str) -> str:
    """The upstream a proxy uses, and when it is not its own remote_url, where it comes from."""
    try:
        remote, source = loops.effective_remote(remote_url)
    except UpstreamError as exc:
        return f"(none: {exc})"
    return redact(remote) if remote_url else f"{redact(remote)} ({source})"


@repo.command("remove")
@click.argument("name")
@with_database
def repo_remove(name: str) -> None:
    """Remove a repository and its file records; the files themselves stay in the blob store."""
    repository_admin.remove_repository(name, Actor.command_line())
    click.echo(f"removed repository {name!r}")


@cli.group()
def cache() -> None:
    """Manage what proxy repositories have cached."""


@cache.command("refresh")
@click.argument("repository")
@click.argument("project")
@with_database
def cache_refresh(repository: str, project: str) -> None:
    """Fetch PROJECT's page from REPOSITORY's upstream now."""
    count = repository_admin.refresh_cached_project(services().repositories, repository, project, Actor.command_line())
    click.echo(f"refreshed {project!r} in {repository!r}: {count} files")


@cache.command("forget")
@click.argument("repository")
@click.argument("project")
@with_database
def cache_forget(repository: str, project: str) -> None:
    """Drop PROJECT from REPOSITORY's cache; its next request fetches it afresh."""
    repository_admin.forget_cached_project(services().repositories, repository, project, Actor.command_line())
    click.echo(f"forgot {project!r} in {repository!r}")


@cli.group()
def policy() -> None:
    """The package firewall: repositories' policies, and what they let through."""


@policy.command("show")
@click.argument("repository")
@with_database
def policy_show(repository: str) -> None:
    """Print REPOSITORY's policy as JSON (null: none)."""
    click.echo(json.dumps(policy_admin.show_policy(repository), indent=2, sort_keys=True))


@policy.command("set")
@click.argument("repository")
@click.argument("file", required=False, type=click.File("rb"))
@click.option("--from-config", is_flag=True, help="the policy the config file gives REPOSITORY")
@click.option("--remove", is_flag=True, help="no policy at all")
@with_database
def policy_set(repository: str, file: BinaryIO | None, from_config: bool, remove: bool) -> None:
    """Replace REPOSITORY's policy with FILE's (a TOML table of rules, as under [repository.policy]; - for
    stdin). Every page of the repository changes on the next request."""
    if sum((file is not None, from_config, remove)) != 1:
        raise click.UsageError("give exactly one of FILE, --from-config and --remove")
    rules: dict[str, Any] | None = None
    if file is not None:
        try:
            rules = tomllib.loads(file.read(MAX_POLICY_FILE).decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"{file.name}: not a TOML table of rules: {exc}") from None
    elif from_config:
        spec = next((s for s in services().config.repositories if s.name == repository), None)
        if spec is None:
            raise click.ClickException(f"the config file defines no repository {repository!r}")
        rules = policies.as_dict(spec.policy) if spec.policy is not None else None
    spec = policy_admin.set_policy(repository, rules, Actor.command_line())
    click.echo(f"policy of {repository!r}: " + (policies.to_json(spec.policy) if spec.policy else "none"))


@policy.command("explain")
@click.argument("repository")
@click.argument("project_name", metavar="PROJECT")
@click.argument("version", required=False)
@with_database
def policy_explain(repository: str, project_name: str, version: str | None) -> None:
    """What REPOSITORY offers of PROJECT (or of one VERSION), and why not."""
    found = policy_admin.explain(services().repositories, repository, project_name, version)
    if not found["versions"]:
        raise click.ClickException(f"{repository!r} lists no {'version ' + version + ' of ' if version else ''}"
                                   f"{found['project']!r}")
    for release in found["versions"]:
        reported = sorted({f"{d['repository']} ({d['rule']})" for file in release["files"] for d in file["blocked"]
                           if not d["enforced"]})
        state = "allowed" if release["allowed"] else "blocked"
        if release["allowed"] and reported:
            state = f"offered; would be blocked by {', '.join(reported)} (report mode)"
        click.echo(f"{release['version']}: {state}")
        for file in release["files"]:
            for decision in file["blocked"]:
                ids = f" [{', '.join(decision['advisories'])}]" if decision["advisories"] else ""
                mode = "" if decision["enforced"] else ", report mode"
                click.echo(f"  {file['filename']}: {decision['rule']} ({decision['repository']}{mode}): "
                           f"{decision['reason']}{ids}")


@cli.group()
def project() -> None:
    """Manage the projects of hosted repositories."""


@project.command("status")
@click.argument("repository")
@click.argument("project_name", metavar="PROJECT")
@click.argument("status", type=click.Choice(list(STATUSES)))
@click.option("--reason", default="", help="one line shown to installers with the status")
@with_database
def project_status(repository: str, project_name: str, status: str, reason: str) -> None:
    """Mark PROJECT in REPOSITORY active, archived, deprecated or quarantined (PEP 792)."""
    hosted = services().repositories.get(repository, None)
    packages.set_status(hosted, project_name, status, reason, Actor.command_line())
    click.echo(f"{project_name!r} in {repository!r} is {status}")


@cli.command("yank")
@click.argument("repository")
@click.argument("project_name", metavar="PROJECT")
@click.argument("version")
@click.option("--reason", default="", help="one line shown to installers")
@with_database
def yank(repository: str, project_name: str, version: str, reason: str) -> None:
    """Yank every file of PROJECT's VERSION in REPOSITORY (PEP 592): installers skip it unless pinned with ==."""
    hosted = services().repositories.get(repository, None)
    packages.set_yanked(hosted, project_name, version, True, reason, Actor.command_line())
    click.echo(f"yanked {project_name!r} {version} in {repository!r}")


@cli.command("unyank")
@click.argument("repository")
@click.argument("project_name", metavar="PROJECT")
@click.argument("version")
@with_database
def unyank(repository: str, project_name: str, version: str) -> None:
    """Take the yank off PROJECT's VERSION in REPOSITORY."""
    hosted = services().repositories.get(repository, None)
    packages.set_yanked(hosted, project_name, version, False, "", Actor.command_line())
    click.echo(f"unyanked {project_name!r} {version} in {repository!r}")


@cli.group()
def user() -> None:
    """Manage users."""


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="global administrator")
@click.option("--robot", is_flag=True, help="a CI user that logs in with tokens only")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@with_database
def user_add(name: str, admin: bool, robot: bool, password_stdin: bool) -> None:
    """Add a user (prompts for the password unless --password-stdin or --robot)."""
    password = None if robot and not password_stdin else _read_password(password_stdin)
    users.create_user(name, password, Actor.command_line(), admin=admin, robot=robot)
    click.echo(f"created user {name!r}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@with_database
def user_passwd(name: str, password_stdin: bool) -> None:
    """Set a user's password."""
    users.get_user(name)  # an unknown name fails before the prompt
    removed = users.set_password(name, _read_password(password_stdin), Actor.command_line(),
                                 services().config.data_dir)
    click.echo(f"changed the password of {name!r}")
    if removed is not None:
        click.echo(f"removed {removed}, which held the initial one")


@user.command("list")
@with_database
def user_list() -> None:
    """List users."""
    _header("NAME", "KIND")
    for row in users.list_users():
        kind = "admin" if row.admin else "robot" if row.robot else "user"
        click.echo(f"{row.name}\t{kind}")


@user.command("remove")
@click.argument("name")
@with_database
def user_remove(name: str) -> None:
    """Remove a user with their tokens and grants."""
    users.remove_user(name, Actor.command_line())
    click.echo(f"removed user {name!r}")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@cli.group()
def token() -> None:
    """Manage API tokens."""


@token.command("create")
@click.option("--user", "owner", required=True, help="the token's owner")
@click.option("--repo", "repos", multiple=True, help="narrow the token to this repository (repeat for more)")
@click.option("--read-only", is_flag=True, help="the token may read but never upload or administer")
@click.option("--expires", "expires_days", type=int, help="days until the token expires")
@with_database
def token_create(owner: str, repos: tuple[str, ...], read_only: bool, expires_days: int | None) -> None:
    """Create a token; the secret is printed alone on stdout, this once."""
    row, secret = tokens.create_token(owner, Actor.command_line(), repos=repos, read_only=read_only,
                                      expires_days=expires_days)
    click.echo(f"created token {row.id} for {owner!r}", err=True)
    click.echo(secret)


@token.command("list")
@click.option("--user", "owner", help="only this user's tokens")
@with_database
def token_list(owner: str | None) -> None:
    """List tokens (never their secrets)."""
    _header("ID", "USER", "REPOSITORIES", "ACCESS", "STATE", "LAST USED")
    for row in tokens.list_tokens(owner):
        info = tokens.as_json(row)
        state = "revoked" if info["revoked"] else f"expires {info['expires']}" if info["expires"] else "active"
        scope = ",".join(info["repos"]) if info["repos"] is not None else "*"
        access_words = "read-only" if info["read_only"] else "read-write"
        click.echo(f"{info['id']}\t{info['user']}\t{scope}\t{access_words}\t{state}\t"
                   f"last used {info['last_used'] or 'never'}")


@token.command("revoke")
@click.argument("token_id", type=int)
@with_database
def token_revoke(token_id: int) -> None:
    """Revoke a token at once."""
    tokens.revoke_token(token_id, Actor.command_line())
    click.echo(f"revoked token {token_id}")


class _GrantGroup(click.Group):
    """`grant USER REPO LEVEL` as before, beside `grant list`: a first word that is no subcommand sets."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["set", *args]
        return super().parse_args(ctx, args)


@cli.group("grant", cls=_GrantGroup)
def grant() -> None:
    """Give a level on a repository (grant USER REPOSITORY LEVEL), or list grants (grant list)."""


@grant.command("set")
@click.argument("user_name")
@click.argument("repository")
@click.argument("level", type=click.Choice(list(LEVELS)))
@with_database
def grant_set(user_name: str, repository: str, level: str) -> None:
    """Give USER the LEVEL (read, upload or admin) on REPOSITORY."""
    grants.set_grant(user_name, repository, level, Actor.command_line())
    click.echo(f"granted {level} on {repository!r} to {user_name!r}")


@grant.command("list")
@click.option("--repo", "repository", help="only the grants on this repository")
@click.option("--user", "user_name", help="only this user's grants")
@with_database
def grant_list(repository: str | None, user_name: str | None) -> None:
    """List who holds which level on which repository."""
    _header("REPOSITORY", "USER", "LEVEL")
    for row in grants.list_grants(repository=repository, user=user_name):
        click.echo(f"{row['repository']}\t{row['user']}\t{row['level']}")


@cli.command("revoke")
@click.argument("user_name")
@click.argument("repository")
@with_database
def revoke(user_name: str, repository: str) -> None:
    """Take USER's grant on REPOSITORY away."""
    grants.remove_grant(user_name, repository, Actor.command_line())
    click.echo(f"revoked {user_name!r}'s grant on {repository!r}")


@cli.command("check")
@click.option("--gc", is_flag=True, help="also remove blobs no file refers to (untouched for an hour)")
@with_database
def check_command(gc: bool) -> None:
    """Check the database against the blob store; exit 1 when anything is missing, corrupt or stray."""
    report = maintenance.check(services().blobs, gc=gc)
    for label, items in (("database", report.database_errors), ("missing", report.missing), ("corrupt", report.corrupt),
                         ("stray temp file", report.stray_temp)):
        for item in items:
            click.echo(f"{label}: {item}")
    click.echo(f"{report.records} file records; checked {report.checked} blobs: {len(report.missing)} missing, "
               f"{len(report.corrupt)} corrupt, {len(report.unreferenced)} unreferenced, "
               f"{len(report.stray_temp)} stray temp files"
               + (f"; removed {report.removed} blobs ({report.removed_bytes} bytes) and {report.removed_temp} "
                  "temp files" if gc else ""))
    if not report.clean:
        raise click.ClickException("the data dir has problems (listed above): restore the missing or corrupt "
                                   "files from a backup, or run check --gc for stray temp files")


@cli.command("copy-blobs")
@click.argument("target_config", type=click.Path(exists=True, dir_okay=False))
@with_database
def copy_blobs_command(target_config: str) -> None:
    """Copy every blob the database names into the blob store TARGET_CONFIG's [storage] names, verified by
    sha256 (a local blob dir into a bucket); then point the index's config at that store."""
    try:
        target = open_blob_store(load_config(target_config))
    except ConfigError as exc:
        raise click.ClickException(f"{target_config}: {exc}") from None
    report = blobcopy.copy_blobs(services().blobs, target)
    for label, items in (("missing", report.missing), ("corrupt", report.corrupt)):
        for item in items:
            click.echo(f"{label}: {item}")
    click.echo(f"copied {report.copied} blobs ({report.copied_bytes} bytes), {report.present} already there, "
               f"{len(report.missing)} missing, {len(report.corrupt)} corrupt")
    if report.missing or report.corrupt:
        raise click.ClickException("some blobs were not copied (listed above): run check, restore them from a "
                                   "backup, and copy again")


@cli.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repo", "repository", required=True, help="the hosted repository (or a group's upload_to)")
@with_database
def import_command(directory: Path, repository: str) -> None:
    """Import every wheel and sdist under DIRECTORY, checked as uploads; exit 1 if any file is rejected."""
    ctx = services()
    target = ctx.repositories.get(repository, None).upload_target()
    directory = directory.resolve()
    candidates, others = importer.scan(directory)
    report = importer.ImportReport(ignored=[importer.relative(p, directory) for p in others])
    with click.progressbar(length=len(candidates), label="importing", file=sys.stderr,
                           hidden=not sys.stderr.isatty()) as bar:
        try:
            importer.import_files(target, directory, candidates, ctx.blobs, ctx.config.max_upload_bytes,
                                  Actor.command_line(), report, advance=lambda: bar.update(1))
        except OSError as exc:
            raise click.ClickException(f"import into {target.name!r} stopped after {report.done} of "
                                       f"{len(candidates)} files: {exc.strerror or exc}") from None
    for name, reason in report.rejected:
        click.echo(f"rejected {name}: {reason}")
    click.echo(f"{len(report.imported)} imported, {len(report.identical)} skipped as identical, "
               f"{len(report.rejected)} rejected, {len(report.ignored)} ignored (not distributions) "
               f"into {target.name!r}")
    if report.rejected:
        raise click.ClickException(f"{len(report.rejected)} of {len(candidates)} files rejected (listed above)")


@cli.group("advisories")
def advisory_commands() -> None:
    """Vulnerability and malware advisories (OSV), imported offline for the package firewall."""


# Unreadable records an import names one by one; the rest are counted.
_SHOWN_UNREADABLE = 20


@advisory_commands.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@with_database
def advisories_import(path: Path) -> None:
    """Import the OSV records in PATH: a zip of OSV JSON records (the OSV project's PyPI dump) or a directory
    of them. Records already imported are replaced; withdrawn ones are removed."""
    report = advisories.ImportReport()
    with advisory_sources.Source(path) as source, click.progressbar(
            length=source.count, label="importing advisories", file=sys.stderr, hidden=not sys.stderr.isatty()) as bar:
        advisories.import_records(source.records(), source.name, report, Actor.command_line(),
                                  advance=lambda: bar.update(1))
    for name, why in report.malformed[:_SHOWN_UNREADABLE]:
        click.echo(f"skipped {name!r}: {why}")
    more = len(report.malformed) - _SHOWN_UNREADABLE
    click.echo((f"skipped {more} more unreadable records\n" if more > 0 else "")
               + f"{report.stored} advisories stored, {report.removed} removed (withdrawn or about no PyPI version), "
               f"{report.ignored} ignored (about no PyPI version), {len(report.malformed)} unreadable, "
               f"{report.invalid_versions} invalid versions left out, from {source.name!r}")


@advisory_commands.command("status")
@with_database
def advisories_status() -> None:
    """Say how many advisories are stored and how old they are."""
    current = advisories.status()
    age = current.age_seconds()
    if age is None:
        click.echo("no advisories imported yet: run `advisories import PATH` with an OSV dump")
        return
    click.echo(f"{current.advisories} advisories ({current.malicious} about malicious packages), imported "
               f"{current.imported:%Y-%m-%d %H:%M} UTC from {current.source!r}, {_age(age)} old")
    limit = services().config.advisories_max_age
    if limit and age > limit:
        click.echo(f"older than advisories.max_age ({services().config.advisories.max_age}): import a newer dump")


def _age(seconds: int) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} hours"
    return f"{seconds // 60} minutes"


@cli.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@config_option
def backup_command(dest: Path, config_path: str | None) -> None:
    """Copy the database and the files it lists into DEST (empty or new) while the server keeps serving."""
    config = command_config(config_path)
    if config.storage.backend != "local":
        raise click.ClickException("backup copies a local blob store only; on S3 storage, keep the bucket with the "
                                   "store's own versioning or replication, and the database with its own backups")
    if config.database.url and not config.database.url.startswith("sqlite:"):
        raise click.ClickException("backup copies SQLite data dirs only; back up PostgreSQL with pg_dump and "
                                   "the blobs directory with your file backup tool")
    existing_data_dir(config)
    dest = dest.resolve()
    if dest == config.data_dir or config.data_dir in dest.parents:
        raise click.ClickException(f"backup destination {str(dest)!r} is inside the data dir")
    opened = open_services(config)
    with database.connection_context():
        try:
            backups.prepare_destination(dest)
            assert isinstance(opened.blobs, LocalBlobStore)  # storage.backend is "local"
            report = backups.backup(Path(database.obj.database), opened.blobs, dest)
        except backups.BackupError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"backed up the database ({report.database_bytes} bytes) and {report.blobs} files "
               f"({report.blob_bytes} bytes, {report.linked} hard-linked) to {dest}")
    if report.missing:
        raise click.ClickException(f"{report.missing} hosted files have no blob in the data dir and are missing "
                                   "from the backup too; run check")


@cli.command("migrate-to")
@click.option("--database-url", required=True, help="a new, empty PostgreSQL database: postgresql://…")
@config_option
def migrate_to(database_url: str, config_path: str | None) -> None:
    """Copy this data dir's SQLite database into an empty PostgreSQL database, verified; the blobs stay."""
    config = command_config(config_path)
    if config.database.url:
        raise click.ClickException("migrate-to moves the SQLite database of a data dir; this config names "
                                   "database.url already")
    if not database_url.startswith(("postgresql:", "postgres:")):
        raise click.ClickException("--database-url must be a postgresql:// URL")
    existing_data_dir(config)
    open_services(config)  # the source at this version's schema
    try:
        copied = moving.move(config.data_dir / "pypilite.db", database_url)
    except moving.MoveError as exc:
        raise click.ClickException(str(exc)) from None
    except pw.OperationalError as exc:
        raise click.ClickException(f"the target database: {str(exc).splitlines()[0]}") from None
    click.echo(f"moved {sum(copied.values())} rows of {len(copied)} tables into PostgreSQL, counts verified; "
               "set database.url to it (PYPILITE_DATABASE_URL) and start the nodes on this data dir's blobs")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every refusal is one line on stderr and a non-zero exit, never a traceback."""
    try:
        # Without standalone mode click returns a command's exit status instead of exiting.
        status = cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("pypilite: aborted", err=True)
        return 1
    except click.ClickException as exc:
        click.echo(f"pypilite: {exc.format_message()}", err=True)
        return exc.exit_code
    except (StartupError, ConfigError) as exc:
        click.echo(f"pypilite: {exc}", err=True)
        return 1
    except UserError as exc:
        click.echo(f"pypilite: {exc.message}", err=True)
        return 1
    return status if isinstance(status, int) else 0
