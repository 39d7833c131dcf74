"""The explanation page in a real headless Chromium (Debian's chromium +
chromium-driver): no console error, one section per compound with a chart per
call and its nearest compounds, and the compound filter works."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from headless_chromium import Browser, find_chromium
from moa_lit.predict import predict
from saved_run import trained_run

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium and chromedriver not found (Debian: apt-get install chromium chromium-driver)"
)


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    run_dir, data_dir = trained_run(tmp_path_factory)
    out = tmp_path_factory.mktemp("explained")
    predict(OmegaConf.create({"run_dir": str(run_dir), "input": str(data_dir / "test_features.csv"),
                              "output": str(out / "preds.csv"), "top_k": 2, "num_threads": 1, "explain": True, "k": 3}))
    folder = out / "preds_explained"
    return folder / "page.html", json.loads((folder / "explanations.json").read_text())


@pytest.fixture(scope="module")
def browser():
    with Browser(*CHROMIUM) as b:
        yield b


def test_page_opens_without_console_errors_and_shows_every_compound(explained, browser):
    page, explanations = explained
    browser.open(page)
    assert browser.console_errors() == []
    found = browser.run(
        """return Array.from(document.querySelectorAll('section.compound')).map(function (s) {
             return {id: s.dataset.compound, charts: s.querySelectorAll('svg.chart').length,
                     calls: s.querySelectorAll('.call h3').length,
                     neighbours: s.querySelectorAll('table.neighbours tr').length - 1,
                     bars: s.querySelectorAll('svg.chart rect').length,
                     visible: s.getBoundingClientRect().height > 0};
           });"""
    )
    compounds = explanations["compounds"]
    assert [f["id"] for f in found] == [c["compound_id"] for c in compounds] and len(found) > 10
    for f, c in zip(found, compounds):
        assert f["calls"] == len(c["calls"]) == 2 and f["charts"] == 2 and f["neighbours"] == 3 and f["visible"]
        assert f["bars"] == sum(len(call["top_features"]) for call in c["calls"])
    # The filter shows one compound when given its id.
    target = compounds[3]["compound_id"]
    shown = browser.run(
        """var box = document.getElementById('filter'); box.value = arguments[0];
           box.dispatchEvent(new Event('input'));
           return [document.getElementById('shown').textContent,
                   document.querySelectorAll('section.compound:not([hidden])').length];""",
        target,
    )
    assert shown == ["1", 1]
    assert browser.console_errors() == []


def test_console_errors_are_caught(tmp_path, browser):
    """The check above can fail: a script error and a missing file are reported."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><script>notDefined();</script><img src="absent.png"></body></html>')
    browser.open(page)
    errors = browser.console_errors()
    assert any("notDefined" in e for e in errors) and any("absent.png" in e for e in errors)
