"""One self-contained HTML page per prediction batch (no external file, font
or script): per compound, its top MoAs with pooled probability and replicate
agreement, a bar chart of the inputs that push each call up most, and its
nearest known compounds. A small inline script filters compounds by id. The
page's frame, style and script are ``page_template.html``."""

from __future__ import annotations

from html import escape
from pathlib import Path
from string import Template

_TEMPLATE = Template((Path(__file__).parent / "page_template.html").read_text(encoding="utf-8"))

_COLOURS = {"column": "#2f6fb0", "component": "#c2702b", "row statistic": "#7a5bb5", "meta": "#6b7785", "stacked prediction": "#3c8f5a"}


def _bar_chart(features: list[dict], width: int = 330) -> str:
    if not features:
        return '<p class="agree">no input pushes this score up</p>'
    row_h, label_w = 16, 150
    top = max(f["attribution"] for f in features)
    bars = []
    for i, f in enumerate(features):
        w = max(1.0, (width - label_w - 50) * f["attribution"] / top)
        y = i * row_h
        label = f["name"] if len(f["name"]) <= 24 else f["name"][:23] + "\u2026"
        loadings = ", ".join(f'{item["column"]} {item["loading"]:+.2f}' for item in f.get("top_loadings", [])[:5])
        tip = f'{f["name"]} ({f["kind"]}): {f["attribution"]:.4f}' + (f"; top loadings: {loadings}" if loadings else "")
        bars.append(
            f'<g><title>{escape(tip)}</title>'
            f'<text x="{label_w - 4}" y="{y + 12}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 5}" fill="{_COLOURS.get(f["kind"], "#2f6fb0")}"></rect>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 12}">{f["attribution"]:.3f}</text></g>'
        )
    height = row_h * len(features) + 2
    return (f'<svg class="chart" role="img" aria-label="top inputs" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">{"".join(bars)}</svg>')


def _call(call: dict) -> str:
    derived = [f for f in call["top_features"] if f.get("top_loadings")]
    loading_notes = "".join(
        f'<li>{escape(f["name"])}: {escape(", ".join(item["column"] for item in f["top_loadings"][:5]))}</li>' for f in derived
    )
    return (
        f'<div class="call"><h3>{call["rank"]}. {escape(call["moa"])} \u2014 {call["probability"]:.3f}</h3>'
        f'<p class="agree">rows {call["row_min"]:.3f}\u2013{call["row_max"]:.3f} (sd {call["row_std"]:.3f}); '
        f'ranked first by {100 * call["rows_ranking_first"]:.0f}% of rows</p>'
        + _bar_chart(call["top_features"])
        + (f'<ul class="agree">{loading_notes}</ul>' if loading_notes else "")
        + "</div>"
    )


def _neighbours(items: list[dict]) -> str:
    rows = "".join(
        f'<tr><td>{escape(n["drug_id"])}</td><td>{n["similarity"]:.3f}</td><td>{escape(", ".join(n["moas"]))}</td></tr>'
        for n in items
    )
    return f'<table class="neighbours"><tr><th>known compound</th><th>similarity</th><th>its MoAs</th></tr>{rows}</table>'


def _section(c: dict) -> str:
    cid = c["compound_id"]
    return (
        f'<section class="compound" data-compound="{escape(cid)}" id="compound-{escape(cid)}">'
        f'<h2>{escape(cid)} <span class="agree">({len(c["sig_ids"])} row{"s" if len(c["sig_ids"]) != 1 else ""})</span></h2>'
        f'<div class="calls">{"".join(_call(call) for call in c["calls"])}</div>'
        f'<h3 style="font-size:.95rem">Nearest known compounds</h3>{_neighbours(c["nearest_compounds"])}'
        "</section>"
    )


def render(explanations: dict) -> str:
    compounds, method = explanations["compounds"], explanations["method"]
    controls = explanations.get("control_only_compounds", [])
    return _TEMPLATE.substitute(
        title=escape(explanations.get("title") or "MoA calls"), n=len(compounds),
        controls=f"; {len(controls)} control-only compounds have no MoA" if controls else "",
        pooling=escape(method["pooling"]), attributions=escape(method["attributions"]),
        neighbours=escape(method["neighbours"]), sections="".join(_section(c) for c in compounds),
    )
