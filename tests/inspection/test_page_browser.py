"""`hubkit inspect`'s page in a real headless Chromium (Debian's package, driven by Selenium through Debian's
chromedriver; no browser is ever downloaded): hovering a token shows its explanation, every token has a
span, the table sorts, and a 2,000-token page loads and answers a hover. Skipped where Chromium is absent
(scripts/install.sh installs it as root)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from hubkit.base_access import Base
from hubkit.inspection.baseline import Baseline
from hubkit.inspection.core import Inspection
from hubkit.inspection.source import TokenSequence
from hubkit.pair import RoundTrip
from hubkit.verbalizer import Explanation

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,900",
)

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)) or shutil.which("chromedriver") is None,
    reason="Debian chromium and chromium-driver are not installed (scripts/install.sh installs them as root)",
)


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def small_page(tmp_path_factory) -> tuple[Path, Inspection]:
    from hubkit import heads
    from hubkit.pair import NLAPair
    from hubkit.reconstructor import ActivationReconstructor
    from hubkit.testing import make_tiny_model, tiny_metas
    from hubkit.verbalizer import ActivationVerbalizer

    tiny = make_tiny_model("llama", d_model=32, n_layers=2)
    av_meta, ar_meta = tiny_metas(tiny, layer=1)
    pair = NLAPair(
        ActivationVerbalizer(tiny.model, tiny.tokenizer, av_meta),
        ActivationReconstructor(tiny.model, tiny.tokenizer, ar_meta, heads.identity_head(32)),
    )
    ins = pair.inspect(
        "The cat sat on the mat. <b>Paris</b> is the capital of France.\nRain falls in spring.",
        base=Base(tiny.model, tiny.tokenizer),
        max_new_tokens=8,
        baseline_b=0.9,
        spliced_loss=True,
    )
    out = ins.save(tmp_path_factory.mktemp("page"))
    return out / "index.html", ins


def _hover(driver, element) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element(element).perform()


def test_hover_shows_the_explanation_and_every_token_has_a_span(browser, small_page, tmp_path):
    from selenium.webdriver.common.by import By

    page, ins = small_page
    browser.get(page.as_uri())
    spans = browser.find_elements(By.CSS_SELECTOR, "#text span.tok")
    records = ins.records()
    assert len(spans) == len(records) == len(ins.sequence.ids)
    for k in (3, len(records) - 1):
        _hover(browser, spans[k])
        shown = browser.find_element(By.CSS_SELECTOR, "#detail pre.explanation").text
        assert shown == (records[k]["explanation"] or "(empty)").strip()
        assert f"[{records[k]['index']}]" in browser.find_element(By.CSS_SELECTOR, "#detail h3").text
    # the raw text is shown as text: the <b> in the source is not markup
    assert "<b>" in browser.find_element(By.ID, "text").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#strip span")) == len(records)
    browser.save_screenshot(str(tmp_path / "inspect.png"))
    if os.environ.get("HUBKIT_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(tmp_path / "inspect.png", os.environ["HUBKIT_SCREENSHOT"])
    assert (tmp_path / "inspect.png").stat().st_size > 1000


def test_table_sorts_by_cosine(browser, small_page):
    from selenium.webdriver.common.by import By

    page, ins = small_page
    browser.get(page.as_uri())
    browser.find_element(By.CSS_SELECTOR, 'th[data-k="cos"]').click()
    first = [int(tr.get_attribute("data-i")) for tr in browser.find_elements(By.CSS_SELECTOR, "#rows tr")]
    by_cos = [r["index"] for r in sorted(ins.records(), key=lambda r: r["cos"])]
    assert first == by_cos
    browser.find_element(By.CSS_SELECTOR, 'th[data-k="cos"]').click()
    again = [int(tr.get_attribute("data-i")) for tr in browser.find_elements(By.CSS_SELECTOR, "#rows tr")]
    assert again == by_cos[::-1]


def _synthetic(n: int) -> Inspection:
    """An inspection of `n` tokens with made-up figures (the page is what is under test)."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(n, 16, generator=g)
    cos = torch.rand(n, generator=g) * 2 - 1
    details = [Explanation(f"explanation of token {i}: " + "words " * 40, "", "ok", 50) for i in range(n)]
    rt = RoundTrip(v, [d.text for d in details], details, v, cos, 2 * (1 - cos))
    seq = TokenSequence(ids=list(range(n)), n_prompt=n, rendered="")
    return Inspection(
        sequence=seq,
        positions=list(range(n)),
        token_texts=[f" tok{i}" for i in range(n)],
        vectors=v,
        round_trip=rt,
        baseline=Baseline(0.8, "given"),
        info={"base_model": "synthetic", "layer": 3, "d_model": 16, "mse_scale": 4.0, "injection_scale": 4.0},
    )


@pytest.mark.slow
def test_a_page_of_2000_tokens_stays_usable(browser, tmp_path):
    from selenium.webdriver.common.by import By

    ins = _synthetic(2000)
    page = tmp_path / "big.html"
    ins.to_html(page)
    t0 = time.perf_counter()
    browser.get(page.as_uri())
    spans = browser.find_elements(By.CSS_SELECTOR, "#text span.tok")
    loaded = time.perf_counter() - t0
    assert len(spans) == 2000
    t0 = time.perf_counter()
    _hover(browser, spans[1999])
    shown = browser.find_element(By.CSS_SELECTOR, "#detail pre.explanation").text
    hovered = time.perf_counter() - t0
    assert shown.startswith("explanation of token 1999:")
    t0 = time.perf_counter()
    browser.find_element(By.CSS_SELECTOR, 'th[data-k="cos"]').click()
    top = browser.find_element(By.CSS_SELECTOR, "#rows tr").get_attribute("data-i")
    sorted_s = time.perf_counter() - t0
    assert int(top) == int(torch.argmin(ins.round_trip.cos))
    print(f"2000-token page: load {loaded:.2f} s, hover {hovered:.3f} s, sort {sorted_s:.3f} s")
    assert loaded < 20 and hovered < 5 and sorted_s < 10  # generous: the machine is shared
