"""The report page in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by selenium loads results/index.html from disk."""
import shutil

import numpy as np
import pandas as pd
import pytest

from disentbench.bench import report
from disentbench.bench.report import selection
from tests.report_runs import fake_run, synthetic_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("Chromium or chromedriver not found on PATH (Debian: apt-get install "
                    "chromium chromium-driver; .ci/run installs them)")
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_page_renders_with_every_image_and_the_best_in_bold(tmp_path, browser):
    synthetic_results(tmp_path, datasets=("dsprites",),
                      labels=("vae", "beta-vae", "control-vae", "l-vae",
                              "beta-vae-fixed-beta-hat"), seeds=3, steps=4)
    report.build(tmp_path)
    browser.get((tmp_path / "index.html").as_uri())
    images = browser.find_elements("tag name", "img")
    assert len(images) >= 10
    broken = [i.get_attribute("src") for i in images
              if not browser.execute_script("return arguments[0].complete && "
                                            "arguments[0].naturalWidth > 0", i)]
    assert not broken, f"images that did not load: {broken}"
    tables = browser.find_elements("tag name", "table")
    captions = [t.find_element("tag name", "caption").text for t in tables
                if t.find_elements("tag name", "caption")]
    assert any(c.startswith("dsprites: methods × headline metrics") for c in captions)
    assert any("learned β̂ against β fixed to it" in c for c in captions)

    comparison = next(t for t in tables if t.find_elements("tag name", "caption") and t.find_element(
        "tag name", "caption").text.startswith("dsprites: methods × headline metrics"))
    header = [th.text for th in comparison.find_elements("css selector", "thead th")]
    column = header.index("mig/discrete_mig ↑")
    bold = [row for row in comparison.find_elements("css selector", "tbody tr")
            if row.find_elements("css selector", f"td:nth-child({column + 1}) strong")]
    assert len(bold) == 1
    label = bold[0].find_element("tag name", "th").text
    cell = bold[0].find_element("css selector", f"td:nth-child({column + 1})").text
    summary = pd.read_csv(tmp_path / "tables/summary.csv").set_index("label")
    best = summary["mig/discrete_mig:mean"].idxmax()
    assert label == best
    assert float(cell.split(" ")[0]) == pytest.approx(summary.at[best, "mig/discrete_mig:mean"],
                                                      rel=5e-3)
    screenshot = tmp_path / "index.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")


WIDE_METRICS = ("mig/discrete_mig", "sap/SAP_score", "dci-fast/disentanglement",
                "modularity-explicitness/modularity_score", "irs/IRS",
                "factor-vae/eval_accuracy", "beta-vae/eval_accuracy",
                "unsupervised/gaussian_total_correlation", "reconstruction/negative_elbo",
                "reconstruction/squared_error")


def test_wide_table_scrolls_in_its_own_box_and_no_number_wraps(tmp_path, browser):
    rng = np.random.RandomState(0)
    labels = ("vae", "beta-vae", "factor-vae", "beta-tcvae", "dip-vae-i", "dip-vae-ii",
              "control-vae", "dynamic-vae", "sigma-vae", "l-vae")
    for label in labels:
        for seed in range(3):
            fake_run(tmp_path, "dsprites-procedural", label, seed, config={"profile": "quick"},
                     values={m: 0.6 + 0.01 * rng.rand() for m in WIDE_METRICS})
    report.build(tmp_path)
    browser.get((tmp_path / "index.html").as_uri())
    assert "Untrained models (quick profile)" in browser.find_element("class name", "warning").text
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"), \
        "the page runs off the right edge"
    table = next(t for t in browser.find_elements("tag name", "table")
                 if "headline metrics" in t.text)
    width, room = browser.execute_script(
        "return [arguments[0].scrollWidth, arguments[0].clientWidth]", table)
    assert width > room, "the 10-metric table should be wider than the page and scroll"
    heights = browser.execute_script(
        "return Array.from(arguments[0].querySelectorAll('tbody td')).map(c => c.offsetHeight)",
        table)
    assert max(heights) < 1.5 * min(heights), "a cell wraps onto a second line"


def test_page_shows_the_sweep_plot_and_the_selection_tables(tmp_path, browser, monkeypatch):
    monkeypatch.setattr(selection, "setting_scores",
                        lambda dirs, correlation_matrix="lasso": {p: 0.5 for p in dirs})
    synthetic_results(tmp_path, datasets=("dsprites",),
                      labels=("beta-vae", "beta-vae-beta=8", "l-vae", "beta-vae-fixed-beta-hat",
                              "vae"), seeds=3, steps=4)
    report.build(tmp_path, select="mig")
    browser.get((tmp_path / "index.html").as_uri())
    sweep = browser.find_element("css selector", 'img[src="plots/sweep_dsprites_beta-vae.png"]')
    assert browser.execute_script("return arguments[0].naturalWidth", sweep) > 600
    captions = [c.text for c in browser.find_elements("tag name", "caption")]
    for rule in ("mig", "mean-rank", "udr"):
        assert f"dsprites: each method's setting chosen by {rule}" in captions
    headings = [h.text for h in browser.find_elements("tag name", "h3")]
    assert "Method ranking between selection rules" in headings
    notes = " ".join(p.text for p in browser.find_elements("css selector", "p.note"))
    assert "no best-seed picking" in notes
