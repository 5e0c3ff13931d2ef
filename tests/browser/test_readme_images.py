"""A package's README cannot make the reader's browser call anywhere: remote images (a tracking pixel would tell
its host who reads a private package, and when) are blocked by the UI's Content-Security-Policy, in headless
Chromium against the live server, with the image host a second loopback port that counts every connection."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.browser.test_ui import new_page, upload
from tests.distfactory import wheel_bytes
from tests.integration.conftest import LiveServer, start_server, stop_server


class Pixels(socketserver.ThreadingTCPServer):
    """A host for remote images that notes every connection made to it (TLS or not) and answers nothing."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.connections = 0
        super().__init__(("127.0.0.1", 0), socketserver.BaseRequestHandler)

    def verify_request(self, request, client_address) -> bool:
        self.connections += 1
        return True


@pytest.fixture(scope="module")
def pixels() -> Iterator[Pixels]:
    server = Pixels()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, pixels: Pixels) -> Iterator[LiveServer]:
    server = start_server("app", tmp_path_factory.mktemp("readme-images"),
                          repositories=[{"name": "local", "repository_type": "hosted"}])
    host = f"127.0.0.1:{pixels.server_address[1]}"
    readme = (f'# Pixels\n\n<img src="https://{host}/pixel.png" alt="html https">\n\n'
              f'![markdown https](https://{host}/markdown.png)\n\n'
              f'<img src="http://{host}/plain.png" alt="html http">\n')
    metadata = ("Metadata-Version: 2.1\nName: pixel-demo\nVersion: 1.0\nSummary: remote images\n"
                f"Description-Content-Type: text/markdown\n\n{readme}")
    upload(server, "local", "pixel_demo-1.0-py3-none-any.whl", wheel_bytes("pixel-demo", "1.0", metadata=metadata))
    yield server
    stop_server(server.process)


def test_readme_images_from_elsewhere_are_never_fetched(live, pixels, browser, screenshots) -> None:
    page = new_page(browser)
    page.add_init_script("window.blocked = []; document.addEventListener('securitypolicyviolation', "
                         "e => window.blocked.push(e.blockedURI));")
    failed, answered = {}, []
    page.on("requestfailed", lambda request: failed.setdefault(request.url, request.failure))
    page.on("response", lambda response: answered.append(response.url))
    response = page.goto(f"{live.url}/ui/local/pixel-demo/")
    page.wait_for_load_state("networkidle")
    images = page.locator("article.readme img")
    port = f":{pixels.server_address[1]}/"
    assert images.count() == 3 and all(port in src for src in images.evaluate_all("els => els.map(e => e.src)"))
    assert "img-src 'self' data:;" in response.headers["content-security-policy"]
    assert sorted(page.evaluate("window.blocked")) == sorted(images.evaluate_all("els => els.map(e => e.src)"))
    # Chromium names a request it refused to make as failed (by the CSP) before it leaves the browser.
    assert [url for url in answered if port in url] == []
    assert {url: failure for url, failure in failed.items() if port in url} == {
        url: "csp" for url in page.evaluate("window.blocked")}
    assert pixels.connections == 0
    page.screenshot(path=screenshots / "readme-remote-images.png", full_page=True)
