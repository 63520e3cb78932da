"""The HTML report in a real headless browser (Debian's Chromium, driven by Playwright).

Skipped when Chromium or Playwright is missing, unless ``PREFLENS_REQUIRE_BROWSER=1`` (set by CI),
which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from test_report import INJECTED, ODD_CONCEPT, make_run

from preflens.report import write_report

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("PREFLENS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install 'preflens[test]')"
    if not os.path.exists(CHROMIUM):
        return "Chromium is not installed (apt-get install chromium)"
    return None


if reason := _missing():
    if os.environ.get("PREFLENS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"PREFLENS_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture(scope="module")
def page_on_report(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    folder, data = make_run(tmp_path_factory.mktemp("browser"), judge=True)
    files = write_report(folder, truth=json.loads((data / "truth.json").read_text()))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        events: dict[str, list[str]] = {"console": [], "errors": [], "requests": [], "dialogs": []}
        page.on("console", lambda m: events["console"].append(f"{m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: events["errors"].append(str(e)))
        page.on("request", lambda r: events["requests"].append(r.url)
                if not r.url.startswith(("file:", "data:", "blob:")) else None)
        page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
        page.goto(files.html.as_uri())
        page.wait_for_function("window.preflensReport !== undefined")
        page.wait_for_timeout(500)
        yield page, events, json.loads(files.data.read_text()), folder
        browser.close()


def test_loads_with_no_console_error_and_no_network(page_on_report):
    page, events, _, folder = page_on_report
    assert events["console"] == [] and events["errors"] == []
    assert events["requests"] == []  # everything is inlined: nothing is fetched
    page.screenshot(path=str(folder / "report-screenshot.png"), full_page=False)


def test_every_plot_renders(page_on_report):
    page, _, data, _ = page_on_report
    from preflens.report import figures

    expected = figures(data)
    drawn = page.eval_on_selector_all(".plot", "els => els.filter(e => e.querySelector('svg.main-svg')).map(e => e.id)")
    assert sorted(drawn) == sorted(expected)
    bars = page.locator("#fig-effects-0-1 .barlayer .point").count()  # cooking's bars
    assert bars > 0
    assert page.locator("#fig-heatmap-0 .hm image, #fig-heatmap-0 .heatmaplayer image").count() >= 1


def test_two_mechanisms_are_compared(page_on_report):
    page, _, data, _ = page_on_report
    assert data["mechanisms"] == ["human", "judge"]
    assert data["agreement"]["names"] == ["human", "judge", "HMDR(human)", "HMDR(judge)"]
    cells = page.eval_on_selector_all("#fig-agreement .ytick text", "els => els.map(e => e.textContent)")
    assert sorted(cells) == sorted(data["agreement"]["names"])
    rows = page.eval_on_selector_all("#fig-comparison .ytick text", "els => els.map(e => e.textContent)")
    assert sorted(rows) == sorted(f"{m} · {s}" for m in ("human", "judge") for s in ("shared", *data["domains"]))
    # the judge's labels are the planted ones with every third pair flipped
    human_vs_judge = data["agreement"]["values"][0][1]
    assert abs(human_vs_judge - (1 - 16 / 48)) < 1e-4  # stored to 4 decimals
    assert page.locator("#viewer-labels tr").count() == 3  # header + two mechanisms


def test_injected_markup_shows_as_text_and_runs_nothing(page_on_report):
    page, events, data, _ = page_on_report
    assert page.evaluate("window.__pwned") is None and events["dialogs"] == []
    hostile = data["pairs"][0]
    page.select_option("#viewer-pair", hostile["id"])
    assert page.inner_text("#viewer-b").endswith(INJECTED)
    assert page.locator("#viewer-b script, #viewer-b img, #viewer-prompt script").count() == 0
    assert page.inner_text("#viewer-prompt").startswith("</script><script>")
    # the concept name with tags is text in the catalogue and in the plots' tick labels
    assert ODD_CONCEPT in page.inner_text("#catalogue-table")
    ticks = page.eval_on_selector_all("#fig-heatmap-0 .ytick text", "els => els.map(e => e.textContent)")
    assert ODD_CONCEPT in ticks
    assert page.evaluate("window.__pwned") is None


def test_example_viewer_filters_steps_and_explains(page_on_report):
    page, _, data, _ = page_on_report
    page.select_option("#viewer-domain", "software")
    software = [p for p in data["pairs"] if p["domain"] == "software"]
    assert page.inner_text("#viewer-count") == f"{len(software)} shown"
    assert page.inner_text("#viewer-domain-tag") == "software"
    first_id = page.inner_text("#viewer-id")
    page.click("#viewer-next")
    second_id = page.inner_text("#viewer-id")
    assert second_id != first_id and second_id == software[1]["id"]
    pair = software[1]
    assert page.inner_text("#viewer-a") == pair["response_a"]
    p_a = pair["predictions"]["human"]["p_a"]
    assert f"{p_a:.2f}" in page.inner_text("#viewer-labels")
    explanation = page.inner_text("#viewer-explanations")
    for concept in pair["predictions"]["human"]["concepts"]:
        assert concept["concept"] in explanation
    planted = pair["truth"]
    assert page.inner_text("#viewer-truth").startswith("Planted: A has " + (", ".join(planted["concepts_a"]) or "none"))
    page.fill("#viewer-search", pair["id"])
    assert page.inner_text("#viewer-count") == "1 shown" and page.inner_text("#viewer-id") == pair["id"]
    page.fill("#viewer-search", "")
    page.select_option("#viewer-domain", "")


def test_catalogue_example_link_opens_the_pair(page_on_report):
    page, _, data, _ = page_on_report
    concept = next(c for c in data["concepts"] if c["examples"])
    target = concept["examples"][0]["id"]
    page.click(f'.pair-link[data-pair="{target}"] >> nth=0')
    assert page.inner_text("#viewer-id") == target
    # the viewer says which concept the pair was opened for, and whether the "why" tables list it
    note = page.inner_text("#viewer-from")
    listed = any(row["concept"] == concept["name"] for pair in data["pairs"] if pair["id"] == target
                 for prediction in pair["predictions"].values() for row in prediction["concepts"])
    assert concept["name"] in note and ("It is in the tables below." in note) == listed
    why = page.inner_text("#viewer-explanations")
    assert (concept["name"] in why) == listed
    page.select_option("#viewer-pair", index=1)
    assert page.inner_text("#viewer-from") == ""  # only for the pair the link opened


LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > width + 1)
    problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} > ${width} px`);
  const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  for (const table of document.querySelectorAll("table")) {
    if (!visible(table)) continue;
    const box = table.getBoundingClientRect();
    let scroller = table.parentElement;
    while (scroller && !["auto", "scroll"].includes(getComputedStyle(scroller).overflowX)) scroller = scroller.parentElement;
    if (box.right > width + 1 && !scroller)
      problems.push(`a table is cut off at the right: ${Math.round(box.right)} > ${width} px: ${table.innerText.slice(0, 60)}`);
  }
  const overlap = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  for (const plot of document.querySelectorAll(".js-plotly-plot")) {
    if (!visible(plot)) continue;
    const frame = plot.getBoundingClientRect();
    const texts = [...plot.querySelectorAll(".gtitle, .annotation-text, .legendtext, .g-xtitle text, .g-ytitle text")]
      .filter(visible).map(el => ({el, box: el.getBoundingClientRect()}));
    const chrome = [...plot.querySelectorAll(".modebar, .legend .bg")].filter(visible).map(el => el.getBoundingClientRect());
    for (let i = 0; i < texts.length; i++) {
      for (let j = i + 1; j < texts.length; j++)
        if (overlap(texts[i].box, texts[j].box))
          problems.push(`${plot.id}: "${texts[i].el.textContent}" overlaps "${texts[j].el.textContent}"`);
      for (const box of chrome)
        if (texts[i].el.closest(".legend") === null && overlap(texts[i].box, box))
          problems.push(`${plot.id}: "${texts[i].el.textContent}" lies under the toolbar or legend`);
    }
    for (const tick of plot.querySelectorAll(".xtick text, .ytick text")) {
      if (!visible(tick)) continue;
      const box = tick.getBoundingClientRect();
      if (box.left < frame.left - 1 || box.right > frame.right + 1 || box.bottom > frame.bottom + 1 || box.top < frame.top - 1)
        problems.push(`${plot.id}: the axis label "${tick.textContent}" is clipped by the plot's frame`);
    }
  }
  return problems;
}"""


@pytest.mark.parametrize("width", [1280, 1920])
def test_layout_has_no_overlap_and_no_clipping(page_on_report, width):
    """At common screen widths: no sideways scroll, no table cut off, no text under a plot's toolbar or
    legend or on another text, no axis label outside its plot."""
    page, _, _, _ = page_on_report
    page.set_viewport_size({"width": width, "height": 1000})
    page.wait_for_timeout(800)  # the plots redraw to the new width
    page.evaluate("() => document.querySelectorAll('details').forEach(d => d.open = true)")
    page.wait_for_timeout(300)
    problems = page.evaluate(LAYOUT_PROBLEMS)
    assert problems == [], "\n".join(problems[:20])
