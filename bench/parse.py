"""What parsing an upstream project page costs, in-process: a page of 2,000 files (1,000 releases, a wheel and
an sdist each, every PEP 691/700/658 field) as PEP 691 JSON and as PEP 503 HTML, through pypilite's parser,
and through pypi-simple's when it is installed. CPU time and peak traced memory, best of ROUNDS.

    python bench/parse.py
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FILES = 2000
ROUNDS = 5
BASE = "https://upstream.example/simple/demo/"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from pypilite.upstream import JSON_V1, parse_page

    files = _files()
    as_json, as_html = _json_page(files), _html_page(files)
    print(f"{FILES} files: JSON {len(as_json) // 1024} KB, HTML {len(as_html) // 1024} KB")
    parsers: dict[str, Callable[[], Any]] = {
        "pypilite JSON": lambda: parse_page(as_json, JSON_V1, BASE),
        "pypilite HTML": lambda: parse_page(as_html, "text/html", BASE),
    }
    try:
        from pypi_simple import ProjectPage
    except ImportError:
        print("pypi-simple is not installed: its parser is not measured")
    else:
        parsers["pypi-simple JSON"] = lambda: ProjectPage.from_json_data(json.loads(as_json), BASE)
        parsers["pypi-simple HTML"] = lambda: ProjectPage.from_html("demo", as_html, BASE, "utf-8")
    for name, parse in parsers.items():
        seconds = min(_cpu(parse) for _ in range(ROUNDS))
        tracemalloc.start()
        parse()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{name:17} {seconds * 1e3:7.1f} ms CPU, peak {peak / 1e6:5.1f} MB")


def _cpu(call: Callable[[], Any]) -> float:
    started = time.process_time()
    call()
    return time.process_time() - started


def _files() -> list[dict[str, Any]]:
    files = []
    for release in range(FILES // 2):
        for filename in (f"demo-1.{release}-py3-none-any.whl", f"demo-1.{release}.tar.gz"):
            files.append({"filename": filename, "url": f"../../files/{filename}",
                          "hashes": {"sha256": f"{release:064x}"}, "requires-python": ">=3.8", "yanked": False,
                          "core-metadata": {"sha256": f"{release + 1:064x}"}, "size": 12345,
                          "upload-time": "2024-01-02T03:04:05.123456Z"})
    return files


def _json_page(files: list[dict[str, Any]]) -> bytes:
    return json.dumps({"meta": {"api-version": "1.3"}, "name": "demo", "files": files,
                       "versions": [f"1.{release}" for release in range(FILES // 2)]}).encode()


def _html_page(files: list[dict[str, Any]]) -> bytes:
    anchors = (f'<a href="{f["url"]}#sha256={f["hashes"]["sha256"]}" data-requires-python="&gt;=3.8" '
               f'data-core-metadata="sha256={f["core-metadata"]["sha256"]}">{f["filename"]}</a><br/>'
               for f in files)
    return ("<!DOCTYPE html><html><head><meta name=\"pypi:repository-version\" content=\"1.3\"></head><body>\n"
            + "\n".join(anchors) + "\n</body></html>").encode()


if __name__ == "__main__":
    main()
