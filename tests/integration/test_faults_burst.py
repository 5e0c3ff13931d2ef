"""A CI burst against gunicorn with four workers: 100 twine-style uploads at once, with real `twine upload`
runs among them. Every one is answered 200, every file is listed with its sha256 and downloads
byte-identical, nothing is left in the temp area, and `check` is clean."""

from __future__ import annotations

import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.distfactory import sdist_bytes, wheel_bytes, write
from tests.integration.conftest import isolated_env, listed, run, start_server, stop_server, twine_form

UPLOADS = 100
PROJECTS = 10  # ten versions each: the burst also races on creating projects and bumping their serials
TWINE_RUNS = 4


def test_a_burst_of_100_uploads_and_twine_runs_is_all_answered_and_all_kept(tmp_path: Path) -> None:
    server = start_server("gunicorn", tmp_path, workers=4)
    try:
        files = {f"burst{i % PROJECTS}-{i}.0-py3-none-any.whl": wheel_bytes(f"burst{i % PROJECTS}", f"{i}.0")
                 for i in range(UPLOADS)}
        twine_dirs = []
        for run_ in range(TWINE_RUNS):
            directory = tmp_path / f"twine-{run_}"
            directory.mkdir()
            write(directory, f"cidist-{run_}.0-py3-none-any.whl", wheel_bytes("cidist", f"{run_}.0"))
            write(directory, f"cidist-{run_}.0.tar.gz", sdist_bytes("cidist", f"{run_}.0"))
            twine_dirs.append(directory)
        env = isolated_env(tmp_path / "home")

        def post(item: tuple[str, bytes]) -> int:
            body, content_type = twine_form(*item)
            return requests.post(f"{server.url}/local/", data=body, headers={"Content-Type": content_type},
                                 auth=("admin", server.admin_password), timeout=120).status_code

        def twine(directory: Path) -> int:
            return run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                        "--repository-url", f"{server.url}/local/", "-u", "admin",
                        f"--password={server.admin_password}", *sorted(directory.iterdir())],
                       env=env, check=False, timeout=300).returncode

        with ThreadPoolExecutor(max_workers=TWINE_RUNS) as twines, ThreadPoolExecutor(max_workers=UPLOADS) as pool:
            twine_results = [twines.submit(twine, directory) for directory in twine_dirs]
            statuses = list(pool.map(post, files.items()))
            twine_codes = [result.result() for result in twine_results]

        assert statuses == [200] * UPLOADS
        assert twine_codes == [0] * TWINE_RUNS
        for directory in twine_dirs:
            files.update((path.name, path.read_bytes()) for path in directory.iterdir())
        pages = {project: listed(server, project) for project in {name.split("-")[0] for name in files}}
        assert sorted(name for page in pages.values() for name in page) == sorted(files)
        for filename, data in files.items():
            entry = pages[filename.split("-")[0]][filename]
            assert entry["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
            url = requests.compat.urljoin(server.simple("local") + "x/", entry["url"])
            assert requests.get(url, timeout=30).content == data, filename
        assert list((server.data_dir / "tmp").iterdir()) == []
    finally:
        stop_server(server.process)
    assert f"checked {2 * len(files) - TWINE_RUNS} blobs: 0 missing, 0 corrupt" in server.assert_check_clean()
