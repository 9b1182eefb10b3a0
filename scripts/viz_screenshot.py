"""Screenshot the project's kedro-viz flowchart (default pipeline, layers view) with headless Chromium.

    python scripts/viz_screenshot.py [--project PATH] [--output PNG] [--window-size 2000,2400]

1. ``kedro viz build --include-previews`` writes the static site to ``<project>/build/``;
2. that folder is served on 127.0.0.1 (a free port) by ``http.server`` in a thread;
3. headless Chromium loads ``/?pid=__default__&types=nodes,datasets`` and saves the PNG
   (default ``<project>/docs/images/kedro-viz.png``), whose path is printed.

Offline: telemetry is off (DO_NOT_TRACK, KEDRO_DISABLE_TELEMETRY) and Chromium resolves no host
but 127.0.0.1, so the Google font the page links falls back to a local one. Needs the Debian
package ``chromium`` (``apt-get install chromium``). The server is stopped even on error.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Put into the served index.html: kedro-viz reads its UI settings from localStorage["KedroViz"], so
# the app starts in the light theme without onboarding pop-up, new-run badge, sidebar or minimap;
# the layer bands, drawn only on mouse-over, are shown on every other layer.
INJECT = """<script>localStorage.setItem("KedroViz", JSON.stringify({showFeatureHints: false,
  theme: "light", layer: {visible: true}, visible: {sidebar: false, miniMap: false}}));
localStorage.setItem("KedroViz-workflow-last-run-end-time", "9999-12-31T00:00:00Z");</script>
<style>.pipeline-layer:nth-of-type(odd) { opacity: 1; fill: #e2e5e9 }</style>"""
ENV = {**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true"}


def find_chromium() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    sys.exit("No Chromium found (tried %s): install it with `apt-get install chromium`." % ", ".join(BROWSERS))


def build_site(project: Path) -> Path:
    """Run `kedro viz build` in the project; return the folder of the static site."""
    command = [sys.executable, "-m", "kedro", "viz", "build", "--include-previews"]
    subprocess.run(command, cwd=project, env=ENV, check=True, stdout=subprocess.DEVNULL)
    site = project / "build"
    if not (site / "index.html").is_file():
        sys.exit(f"`kedro viz build` wrote no {site / 'index.html'}.")
    return site


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    """Serve `site` on 127.0.0.1 at a free port, in a daemon thread."""

    index = (site / "index.html").read_text(encoding="utf-8").replace("<head>", "<head>" + INJECT, 1).encode()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] not in ("/", "/index.html"):
                return super().do_GET()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(index)))
            self.end_headers()
            self.wfile.write(index)

        def log_message(self, *args):  # no access log on stderr
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=site))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def screenshot(browser: str, url: str, output: Path, window_size: str, budget_ms: int) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="viz-chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            # offline: every host name but 127.0.0.1 fails at once (Google Fonts, analytics)
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--window-size={window_size}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={output}",
            url,
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
    if not output.is_file() or output.stat().st_size == 0:
        sys.exit(f"Chromium wrote no screenshot to {output}.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path(__file__).resolve().parents[1], help="Kedro project root")
    parser.add_argument("--output", type=Path, help="PNG to write (default: <project>/docs/images/kedro-viz.png)")
    parser.add_argument("--window-size", default="2000,2400", help="browser window WIDTH,HEIGHT in pixels")
    parser.add_argument("--budget-ms", type=int, default=20000, help="virtual time the page gets to render")
    args = parser.parse_args(argv)

    project = args.project.resolve()
    output = (args.output or project / "docs/images/kedro-viz.png").resolve()
    browser = find_chromium()
    site = build_site(project)
    server = serve(site)
    try:
        port = server.server_address[1]
        url = f"http://127.0.0.1:{port}/?pid=__default__&types=nodes,datasets"
        screenshot(browser, url, output, args.window_size, args.budget_ms)
    finally:
        server.shutdown()
        server.server_close()
    print(output)


if __name__ == "__main__":
    main()
