"""Config: embedded defaults, TOML, environment overrides, and one-line errors naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pypilite.config import DEFAULT_REPOSITORIES, ConfigError, build_config, load_config


def test_defaults_match_the_contract() -> None:
    config = build_config({}, {})
    assert (config.server.host, config.server.port, config.server.public_url) == ("0.0.0.0", 8080, "")
    assert (config.server.default_repository, config.server.max_upload_mb) == ("all", 1024)
    assert config.storage.data_dir == "data" and config.database.url == ""
    assert [(r.name, r.repository_type) for r in config.repositories] == [
        ("local", "hosted"), ("pypi", "proxy"), ("all", "group")]
    assert config.repositories == DEFAULT_REPOSITORIES
    assert config.repositories[2].members == ("local", "pypi") and config.repositories[2].upload_to == "local"


def test_example_config_is_the_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    assert load_config(example, {}) == build_config({}, {})


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 9000\nhost = "127.0.0.1"\n[storage]\ndata_dir = "/srv/x"\n')
    config = load_config(None, {"PYPILITE_CONFIG": str(path), "PYPILITE_SERVER_PORT": "9100"})
    assert (config.server.host, config.server.port, config.storage.data_dir) == ("127.0.0.1", 9100, "/srv/x")


@pytest.mark.parametrize("raw, environ, words", [
    ({"server": {"prot": 1}}, {}, "server.prot"),
    ({"sever": {}}, {}, "sever"),
    ({"server": {"port": "8080"}}, {}, "server.port must be an integer"),
    ({"server": {"port": True}}, {}, "server.port must be an integer"),
    ({"server": {"port": 70000}}, {}, "server.port must be between"),
    ({"server": {"max_upload_mb": 0}}, {}, "max_upload_mb"),
    ({"server": {"public_url": "packages.example"}}, {}, "public_url"),
    ({"server": {"default_repository": "Bad Name"}}, {}, "default_repository"),
    ({"server": {"x_accel_redirect": "_blobs"}}, {}, "x_accel_redirect"),
    ({"server": {"x_accel_redirect": "/_blobs"}}, {}, "x_accel_redirect"),
    ({"server": {"x_accel_redirect": "/a b/"}}, {}, "x_accel_redirect"),
    ({"server": {"x_accel_redirect": "/x/\r\nX-Evil: 1/"}}, {}, "x_accel_redirect"),
    ({"server": "x"}, {}, "[server] must be a table"),
    ({"database": {"url": "mysql://x"}}, {}, "database.url"),
    ({"storage": {"data_dir": ""}}, {}, "data_dir"),
    ({}, {"PYPILITE_SERVER_PORT": "eighty"}, "PYPILITE_SERVER_PORT"),
    ({}, {"PYPILITE_SERVER_PROT": "1"}, "PYPILITE_SERVER_PROT"),
    ({"repository": {"name": "x"}}, {}, "array of tables"),
    ({"repository": [{"name": "api", "repository_type": "hosted"}]}, {}, "reserved"),
    ({"repository": [{"name": "Team", "repository_type": "hosted"}]}, {}, "invalid repository name"),
    ({"repository": [{"name": "x", "repository_type": "mirror"}]}, {}, "repository_type"),
    ({"repository": [{"name": "x", "repository_type": "hosted", "remote_url": "u"}]}, {}, "remote_url"),
    ({"repository": [{"name": "x", "repository_type": "hosted", "public": "yes"}]}, {}, "public"),
    ({"repository": [{"name": "x", "repository_type": "group", "members": "a"}]}, {}, "members"),
    ({"repository": [{"name": "x", "repository_type": "hosted", "format": "npm"}]}, {}, "format"),
    ({"repository": [{"name": "x", "repository_type": "hosted"}] * 2}, {}, "defined twice"),
    ({"server": {"max_upstream_page_mb": 0}}, {}, "max_upstream_page_mb"),
])
def test_mistakes_are_one_line_naming_the_key(raw, environ, words) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(raw, environ)
    message = str(caught.value)
    assert words in message and "\n" not in message


def test_a_refused_remote_url_is_not_repeated_since_it_may_hold_a_token() -> None:
    with pytest.raises(ConfigError, match="remote_url") as caught:
        build_config({"repository": [{"name": "x", "repository_type": "proxy",
                                      "remote_url": "ftp://tok3n@mirror.example/simple/"}]}, {})
    assert "tok3n" not in str(caught.value)


def test_format_pypi_is_accepted() -> None:
    config = build_config({"repository": [{"name": "x", "repository_type": "hosted", "format": "pypi"}],
                           "server": {"default_repository": "x"}}, {})
    assert config.repositories[0].name == "x"


@pytest.mark.parametrize("content, words", [("[server\n", "invalid TOML"), (None, "not found")])
def test_unreadable_files(tmp_path: Path, content, words) -> None:
    path = tmp_path / "c.toml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=words):
        load_config(path, {})


def test_the_example_names_the_shipped_nginx_sites_blob_location() -> None:
    root = Path(__file__).resolve().parents[2]
    location = re.search(r'x_accel_redirect = "(/[^"]+/)"', (root / "deploy" / "nginx.conf").read_text()).group(1)
    assert f"~^{location}" in (root / "deploy" / "nginx.conf").read_text().replace('"', "")
    example = next(line for line in (root / "config.example.toml").read_text().splitlines()
                   if line.startswith("x_accel_redirect"))
    assert f'"{location}"' in example
