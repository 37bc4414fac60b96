"""Regenerate the dashboard screenshots in docs/img/ (``make screenshots``).

Builds a store with the demo and the support bot of tests/ui_stores.py (real SDK, fake OpenAI server),
serves it with ``trodo-trace ui`` and photographs the runs list and a run page with the system Chromium.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from ui_browser import browser_page, build_store, dashboard  # noqa: E402


def main() -> int:
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp) / "trodo.db")
        conn = sqlite3.connect(store)
        try:
            (run_id,) = conn.execute("SELECT run_id FROM runs WHERE name = 'support-bot'").fetchone()
        finally:
            conn.close()
        with dashboard(store) as url, browser_page() as page:
            page.set_viewport_size({"width": 1280, "height": 520})
            page.goto(url + "/")
            page.screenshot(path=str(out / "runs-list.png"))
            page.set_viewport_size({"width": 1280, "height": 760})
            page.goto(f"{url}/runs/{run_id}")
            page.locator('#waterfall details.tr-span[data-kind="llm"]').nth(1).locator("summary").click()
            page.wait_for_selector("#span-panel .span-detail")
            page.screenshot(path=str(out / "run-page.png"))
    print(f"wrote {out / 'runs-list.png'} and {out / 'run-page.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
