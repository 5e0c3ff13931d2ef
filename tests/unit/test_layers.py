"""Only the web layer knows HTTP: services raise pypilite's own errors (errors.UserError), which each door
(the web layer, the CLI) renders its own way."""

from __future__ import annotations

import ast
from pathlib import Path

import pypilite

ROOT = Path(pypilite.__file__).parent

def http_imports(path: Path) -> list[str]:
    """The HTTP exceptions a module imports: werkzeug.exceptions, or flask's abort."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "werkzeug.exceptions":
            found.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "flask":
            found += [f"flask.{alias.name}" for alias in node.names if alias.name == "abort"]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("werkzeug.exceptions")]
    return found


def test_no_module_outside_the_web_layer_raises_http_exceptions() -> None:
    outside = [path for path in ROOT.rglob("*.py") if path.relative_to(ROOT).parts[0] != "web"]
    assert len(outside) > 20
    assert {str(path.relative_to(ROOT)): found for path in outside
            if (found := http_imports(path))} == {}


def test_the_check_sees_what_it_looks_for(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import werkzeug.exceptions\nfrom werkzeug.exceptions import NotFound\nfrom flask import abort\n")
    assert http_imports(module) == ["werkzeug.exceptions", "werkzeug.exceptions", "flask.abort"]
