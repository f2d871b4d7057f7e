"""HTML run reports: content, self-containment, and a real headless browser (Chromium via
Playwright) that loads the page without console errors and lays out every figure."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import he_she_trainer

from gradiend.report import write_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECTIONS = [
    "Summary",
    "Training arguments",
    "Convergence",
    "Encoder",
    "Decoder search",
    "Where the feature lives",
    "Seeds",
    "Timings",
]


@pytest.fixture(scope="module")
def run_dir(planted, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    trainer = he_she_trainer(planted["clm"], tmp, max_seeds=2, min_convergent_seeds=2)
    trainer.evaluate_encoder(max_size=20)
    trainer.evaluate_decoder(target_class="she", lrs=[5.0, 1.0, 0.1], max_size_training_like=10)
    return trainer.run_dir


def test_report_has_every_section_and_is_self_contained(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    text = path.read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in text, title
    assert "figure unavailable" not in text
    # convergence, encoder, decoder, location, seed heatmap and Venn
    assert text.count('<img src="data:image/png;base64,') == 6
    assert not re.search(r"(src|href)=\"(https?:|//)", text)
    assert "<script" not in text and "<link" not in text
    assert '<tr class="sel">' in text  # the selected decoder point and the best seed
    assert "model.layers." in text  # where the feature lives (the importance ranking)


def test_report_of_a_partial_run_leaves_out_what_is_missing(run_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(run_dir / "model", partial / "model")
    text = write_report(partial).read_text()
    assert "not evaluated (run `gradiend evaluate`)" in text
    assert text.count("data:image/png;base64,") == 2  # convergence and the importance heatmap


def test_comparison_report(run_dir, tmp_path):
    seeds = sorted(p for p in (run_dir / "seeds").glob("seed_*") if p.is_dir())
    path = write_report(seeds, tmp_path / "cmp.html", topk=50)
    text = path.read_text()
    assert "comparison of 2 runs" in text and "<h2>Overlap of the runs</h2>" in text
    assert text.count('id="run-seed_') == 2


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_report_in_headless_chromium(run_dir, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium binary: `apt-get install -y chromium` (scripts/install.sh does)")
    path = write_report(run_dir, tmp_path / "report.html")
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 1500})
        page.on(
            "console",
            lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.goto(path.as_uri(), wait_until="load")
        sizes = page.evaluate(
            "[...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight,"
            " i.getBoundingClientRect().width, i.getBoundingClientRect().height])"
        )
        headings = page.evaluate("[...document.querySelectorAll('h2')].map(h => h.textContent)")
        shot = os.environ.get("GRADIEND_REPORT_SCREENSHOT")
        if shot:
            page.screenshot(path=shot, full_page=False)
        browser.close()
    assert problems == []
    assert len(sizes) == 6
    for complete, nw, nh, w, h in sizes:
        assert complete and nw > 0 and nh > 0 and w > 0 and h > 0
    assert headings == SECTIONS
