"""The command line: the same services as the web, and every refusal exactly one line on stderr."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pypilite import audit
from pypilite.cli import cli
from pypilite.database import database
from pypilite.models import File, User
from tests.conftest import call
from tests.distfactory import wheel_bytes


def test_repo_add_list_remove(capsys, config: str) -> None:
    assert call(capsys, "repo", "add", "team", "--type", "hosted", "--private", "--config", config)[0] == 0
    assert call(capsys, "repo", "add", "both", "--type", "group", "--member", "team", "--member", "local",
                "--upload-to", "team", "--config", config)[0] == 0
    code, out, _ = call(capsys, "repo", "list", "--config", config)
    header, *rows = out.splitlines()
    lines = dict(line.split("\t", 1) for line in rows)
    assert code == 0 and sorted(lines) == ["all", "both", "local", "pypi", "team"]
    assert header == "NAME\tTYPE\tACCESS\tSETTINGS"
    assert lines["team"].startswith("hosted\tprivate")
    assert "members=team,local upload_to=team" in lines["both"]
    assert call(capsys, "repo", "remove", "both", "--config", config)[0] == 0
    assert "both" not in call(capsys, "repo", "list", "--config", config)[1]


@pytest.mark.parametrize("args, words", [
    (["repo", "add", "Team", "--type", "hosted"], "invalid repository name"),
    (["repo", "add", "simple", "--type", "hosted"], "reserved"),
    (["repo", "add", "local", "--type", "hosted"], "already exists"),
    (["repo", "add", "x", "--type", "hosted", "--remote-url", "http://u"], "remote_url"),
    (["repo", "add", "x", "--type", "group", "--member", "ghost"], "does not exist"),
    (["repo", "add", "x", "--type", "group", "--member", "pypi", "--upload-to", "pypi"], "upload_to"),
    (["repo", "add", "x", "--type", "mirror"], "mirror"),
    (["repo", "remove", "local"], "member of group 'all'"),
    (["repo", "remove", "ghost"], "not found"),
    (["repo", "frobnicate"], "No such command"),
    (["user", "add", "bot", "--robot", "--password-stdin"], "tokens only"),
    (["user", "add", "bad name", "--password-stdin"], "invalid user name"),
    (["user", "add", "admin", "--password-stdin"], "already exists"),
])
def test_refusals_are_one_line(capsys, monkeypatch, config: str, args: list[str], words: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a-password\n"))
    code, _, err = call(capsys, *args, "--config", config)
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("pypilite: ") and words in err


def test_bad_config_is_one_line(capsys, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nport = 'x'\n")
    code, _, err = call(capsys, "repo", "list", "--config", str(path))
    assert code == 1 and err == "pypilite: server.port must be an integer, not 'x'\n"


def test_environment_names_the_config(capsys, monkeypatch, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[storage]\ndata_dir = "{tmp_path / "envdata"}"\n')
    monkeypatch.setenv("PYPILITE_CONFIG", str(path))
    (tmp_path / "envdata").mkdir()
    assert call(capsys, "repo", "list")[0] == 0
    assert (tmp_path / "envdata" / "pypilite.db").is_file()


@pytest.mark.parametrize("args", [["repo", "list"], ["user", "list"], ["check"], ["backup", "dest"],
                                  ["import", ".", "--repo", "local"], ["token", "create", "--user", "admin"]])
def test_commands_refuse_a_data_dir_that_does_not_exist(capsys, monkeypatch, tmp_path: Path, args) -> None:
    monkeypatch.delenv("PYPILITE_CONFIG", raising=False)
    monkeypatch.delenv("PYPILITE_STORAGE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # the embedded defaults' relative data dir: a command run from the wrong place
    code, out, err = call(capsys, *args)
    assert code == 1 and out == ""
    assert err == (f"pypilite: no data dir at {tmp_path / 'data'}: start the server once to create it, "
                   "or name the index's config with --config FILE\n")
    assert not (tmp_path / "data").exists()


def test_user_add_reads_the_password_from_stdin(capsys, monkeypatch, config: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pass\n"))
    assert call(capsys, "user", "add", "alice", "--admin", "--password-stdin", "--config", config)[0] == 0
    with database.connection_context():
        alice = User.get(User.name == "alice")
    from werkzeug.security import check_password_hash
    assert alice.admin and check_password_hash(alice.password_hash, "s3cret-pass")


def test_user_add_prompts_twice(config: str) -> None:
    result = CliRunner().invoke(cli, ["user", "add", "bob", "--config", config], input="pw-one-long\npw-one-long\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("Password") == 1 and "Repeat for confirmation" in result.output


def test_robot_needs_no_password(capsys, config: str) -> None:
    assert call(capsys, "user", "add", "ci", "--robot", "--config", config)[0] == 0
    with database.connection_context():
        assert User.get(User.name == "ci").password_hash == ""


def test_token_create_prints_the_secret_alone(capsys, monkeypatch, config: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("alice-password\n"))
    call(capsys, "user", "add", "alice", "--password-stdin", "--config", config)
    code, out, err = call(capsys, "token", "create", "--user", "alice", "--repo", "local", "--read-only",
                          "--expires", "7", "--config", config)
    assert code == 0 and out.count("\n") == 1 and out.startswith("pypl_")
    code, out, _ = call(capsys, "token", "list", "--user", "alice", "--config", config)
    header, line = out.splitlines()
    assert header == "ID\tUSER\tREPOSITORIES\tACCESS\tSTATE\tLAST USED"
    token_id, owner, scope, mode, state, _last = line.split("\t")
    assert (owner, scope, mode) == ("alice", "local", "read-only") and state.startswith("expires")
    assert call(capsys, "token", "revoke", token_id, "--config", config)[0] == 0
    assert "revoked" in call(capsys, "token", "list", "--config", config)[1]


def test_grant_and_revoke(capsys, monkeypatch, config: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("alice-password\n"))
    call(capsys, "user", "add", "alice", "--password-stdin", "--config", config)
    assert call(capsys, "grant", "alice", "local", "upload", "--config", config)[0] == 0
    assert call(capsys, "revoke", "alice", "local", "--config", config)[0] == 0
    code, _, err = call(capsys, "revoke", "alice", "local", "--config", config)
    assert code == 1 and "no grant" in err
    code, _, err = call(capsys, "grant", "alice", "local", "owner", "--config", config)
    assert code == 2 and err.count("\n") == 1


def test_grant_list_prints_headers_and_filters(capsys, monkeypatch, config: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("alice-password\nbob-password\n"))
    for name in ("alice", "bob"):
        call(capsys, "user", "add", name, "--password-stdin", "--config", config)
    call(capsys, "grant", "bob", "local", "read", "--config", config)
    call(capsys, "grant", "alice", "local", "upload", "--config", config)
    code, out, _ = call(capsys, "grant", "list", "--config", config)
    assert code == 0 and out.splitlines() == ["REPOSITORY\tUSER\tLEVEL", "local\talice\tupload", "local\tbob\tread"]
    assert call(capsys, "grant", "list", "--user", "bob", "--config", config)[1].splitlines()[1:] == [
        "local\tbob\tread"]
    assert call(capsys, "grant", "list", "--repo", "local", "--config", config)[1].count("\n") == 3
    code, _, err = call(capsys, "grant", "list", "--repo", "nowhere", "--config", config)
    assert code == 1 and err.count("\n") == 1 and "nowhere" in err


def test_user_passwd_list_remove(capsys, monkeypatch, config: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("alice-password\nnew-password\n"))
    call(capsys, "user", "add", "alice", "--password-stdin", "--config", config)
    assert call(capsys, "user", "passwd", "alice", "--password-stdin", "--config", config)[0] == 0
    with database.connection_context():
        from werkzeug.security import check_password_hash
        assert check_password_hash(User.get(User.name == "alice").password_hash, "new-password")
    listed = call(capsys, "user", "list", "--config", config)[1].splitlines()
    assert listed == ["NAME\tKIND", "admin\tadmin", "alice\tuser"]
    assert call(capsys, "user", "remove", "alice", "--config", config)[0] == 0
    code, _, err = call(capsys, "user", "remove", "admin", "--config", config)
    assert code == 1 and "last administrator" in err


def test_the_first_admins_new_password_retires_the_initial_one(capsys, monkeypatch, config: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("alice-password\nnew-password\nnewer-password\nnewest-password\n"))
    call(capsys, "user", "add", "alice", "--password-stdin", "--config", config)
    initial = Path(config).parent / "data" / "initial-admin-password"
    call(capsys, "user", "list", "--config", config)  # the first command made the admin and the file
    assert initial.is_file()
    assert call(capsys, "user", "passwd", "alice", "--password-stdin", "--config", config)[0] == 0
    assert initial.is_file()  # another user's password is no reason
    code, out, _ = call(capsys, "user", "passwd", "admin", "--password-stdin", "--config", config)
    assert (code, out) == (0, f"changed the password of 'admin'\nremoved {initial}, which held the initial one\n")
    assert not initial.exists()
    code, out, _ = call(capsys, "user", "passwd", "admin", "--password-stdin", "--config", config)
    assert (code, out) == (0, "changed the password of 'admin'\n")


def test_commands_are_audited_as_the_command_line(capsys, monkeypatch, config: str) -> None:
    from pypilite import audit
    call(capsys, "repo", "add", "extra", "--type", "hosted", "--config", config)
    with database.connection_context():
        [event] = audit.query(q="extra")
    assert event.action == "repository.create" and event.actor.startswith("cli:") and event.address == "local"


def test_repo_update_changes_what_the_api_patch_changes(capsys, config: str) -> None:
    assert call(capsys, "repo", "update", "pypi", "--cache-ttl", "60", "--remote-timeout", "3", "--private",
                "--remote-url", "http://u:p@127.0.0.1:9/simple/", "--offline", "true", "--config", config)[0] == 0
    assert call(capsys, "repo", "update", "all", "--pass-through", "Foo_Bar", "--upload-to", "", "--config",
                config)[0] == 0
    lines = dict(line.split("\t", 1) for line in call(capsys, "repo", "list", "--config", config)[1].splitlines())
    assert lines["pypi"] == ("proxy\tprivate\tremote_url=http://***@127.0.0.1:9/simple/ cache_ttl=60 remote_timeout=3"
                             " offline=true upstream=ok")
    assert lines["all"].endswith("members=local,pypi upload_to=- pass_through=foo-bar")
    assert call(capsys, "repo", "update", "all", "--no-pass-through", "--config", config)[0] == 0
    assert call(capsys, "repo", "list", "--config", config)[1].count("pass_through=-") == 1


@pytest.mark.parametrize("args, words", [
    (["repo", "update", "local", "--cache-ttl", "5"], "unknown key 'cache_ttl' for a hosted repository"),
    (["repo", "update", "local"], "nothing to change"),
    (["repo", "update", "all", "--pass-through", "x", "--no-pass-through"], "contradict"),
    (["repo", "update", "ghost", "--private"], "not found"),
    (["repo", "update", "all", "--member", "all"], "cannot contain itself"),
])
def test_repo_update_refusals_are_one_line(capsys, config: str, args: list[str], words: str) -> None:
    code, _, err = call(capsys, *args, "--config", config)
    assert code != 0 and err.count("\n") == 1 and err.startswith("pypilite: ") and words in err


def test_the_config_may_come_before_the_command(capsys, config: str) -> None:
    assert call(capsys, "--config", config, "repo", "add", "early", "--type", "hosted")[0] == 0
    assert "early\thosted" in call(capsys, "repo", "list", "--config", config)[1]


def test_yank_and_unyank_a_release(capsys, config: str, tmp_path: Path) -> None:
    (tmp_path / "dists").mkdir()
    for version in ("1.0", "2.0"):
        (tmp_path / "dists" / f"demo-{version}-py3-none-any.whl").write_bytes(wheel_bytes("demo", version))
    assert call(capsys, "import", str(tmp_path / "dists"), "--repo", "local", "--config", config)[0] == 0
    code, out, _ = call(capsys, "yank", "local", "Demo", "1.0", "--reason", "broken build", "--config", config)
    assert code == 0 and out == "yanked 'Demo' 1.0 in 'local'\n"
    assert _yanked() == {"demo-1.0-py3-none-any.whl": "broken build", "demo-2.0-py3-none-any.whl": None}
    assert call(capsys, "unyank", "local", "demo", "1.0", "--config", config)[1] == "unyanked 'demo' 1.0 in 'local'\n"
    assert set(_yanked().values()) == {None}
    with database.connection_context():
        assert [e.action for e in audit.query(q="demo")][:2] == ["release.unyank", "release.yank"]


def _yanked() -> dict[str, str | None]:
    with database.connection_context():
        return {f.filename: f.yanked_reason if f.yanked else None for f in File.select()}


@pytest.mark.parametrize("args, words", [
    (["yank", "pypi", "demo", "1.0"], "only a hosted repository's"),
    (["yank", "local", "demo", "9.9"], "not found"),
    (["yank", "local", "demo", "not a version"], "invalid version"),
    (["unyank", "ghost", "demo", "1.0"], "repository 'ghost' not found"),
    (["yank", "local", "demo"], "Missing argument 'VERSION'"),
])
def test_yank_refusals_are_one_line(capsys, config: str, args: list[str], words: str) -> None:
    code, _, err = call(capsys, *args, "--config", config)
    assert code != 0 and err.count("\n") == 1 and err.startswith("pypilite: ") and words in err


# Run as `python -c`: the command (succeeding or refused), then whether it built a Flask app or loaded the web layer.
_WITHOUT_THE_WEB = """
import sys, flask
built = []
flask.Flask.__init__ = lambda *args, **kwargs: built.append(args)
from pypilite.cli import main
code = main(sys.argv[1:])
web = sorted(m for m in sys.modules if m.startswith("pypilite.web"))
print("RESULT", len(built), web, file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["repo", "list"], ["user", "list"], ["token", "list"], ["check"],
                                  ["yank", "local", "demo", "1.0"], ["backup", "{dest}"]])
def test_no_command_starts_the_web_layer(config: str, tmp_path: Path, args: list[str]) -> None:
    args = [arg.format(dest=tmp_path / "backup") for arg in args]
    result = subprocess.run([sys.executable, "-c", _WITHOUT_THE_WEB, *args, "--config", config],
                            capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    last = result.stderr.strip().splitlines()[-1]
    assert last == "RESULT 0 []", result.stderr
