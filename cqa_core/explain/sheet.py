"""A one-page case sheet of a pair: a self-contained HTML page (PDF when a converter is installed).

    facts = SheetFacts(image="a.jpg", other="b.jpg", model="default model", digest="9e38...", command="cqa ...",
                       date="2026-12-06 10:00 UTC", verdict=Verdict(0.74, 0.257, "LFW View 1 ..."))
    write_sheet("case.html", case_sheet(pair, facts, kinds))     # what `cqa explain a b --sheet case.html` does
    to_pdf("case.html", "case.pdf")                              # None when no headless Chromium is installed

The page holds both photos, the verdict at the model's threshold (and its calibrated confidence
when a reference run gave one), each chosen method's maps of both faces with their colour bars and
scales (:mod:`cqa_core.explain.pictures`), CQA-Face's branch decomposition and leave-one-out, the
quality readings, the model's name and weights digest, the date and the command that made it.

Self-contained: every image is a ``data:`` URI, the styles are inline and a Content-Security-Policy
forbids any request, so the file opens offline and leaks nothing. A print stylesheet fits one A4 page.
Every name (file names, the model's, the command) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cqa_core.explain.maprender import SHARED_PAIR, MapScale, colour, scale_of
from cqa_core.explain.pictures import (
    DECOMPOSITION_READING,
    LOO_READING,
    SIGN_READING,
    MapKind,
    bar,
    kind_of,
    on_photo,
    pair_scales,
)
from cqa_core.explain.result import PairAnalysis

PHOTO_PX = 360  # longest side of an inlined photo or map (enough for 45 mm at 200 dpi)


@dataclass(frozen=True)
class Verdict:
    """The verdict at the model's own threshold (None when it has none), and where the threshold came from."""

    similarity: float
    threshold: float | None
    source: str  # "LFW View 1 pairsDevTest.txt: best accuracy 86.8% over 1000 pairs", or why there is none
    confidence: str = ""  # the calibrated probability and likelihood ratio, when a reference run gave them

    @property
    def same(self) -> bool | None:
        return None if self.threshold is None else self.similarity >= self.threshold

    def words(self) -> str:
        return {True: "same person", False: "different people", None: "no verdict"}[self.same]


@dataclass(frozen=True)
class SheetFacts:
    """What the sheet says about how it was made."""

    image: str
    other: str
    model: str
    digest: str
    command: str
    date: str
    verdict: Verdict


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def data_uri(image: np.ndarray, side: int = PHOTO_PX) -> str:
    """An RGB uint8 image as a PNG ``data:`` URI, its longest side shrunk to ``side`` px."""
    im = Image.fromarray(np.asarray(image, np.uint8))
    if max(im.size) > side:
        im.thumbnail((side, side), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _shrunk(image: np.ndarray, side: int = PHOTO_PX) -> np.ndarray:
    im = Image.fromarray(np.asarray(image, np.uint8))
    im.thumbnail((side, side), Image.LANCZOS)
    return np.asarray(im)


def _face(src: str, name: str, cls: str) -> str:
    return f"<figure class='{cls}'><img src='{src}' alt='{esc(name)}'><figcaption>{esc(name)}</figcaption></figure>"


def verdict_block(v: Verdict) -> str:
    colour = {True: "same", False: "different", None: "none"}[v.same]
    rule = (f"cosine {v.similarity:.4f} {'≥' if v.same else '<'} threshold {v.threshold:.4f}" if v.threshold is not None
            else f"cosine {v.similarity:.4f}")
    confidence = f"<p class='confidence'>{esc(v.confidence)}</p>" if v.confidence else ""
    return (f"<section class='verdict {colour}'><p class='words'>{esc(v.words())}</p><p class='rule'>{esc(rule)}</p>"
            f"<p class='source'>{'threshold: ' if v.threshold is not None else ''}{esc(v.source)}</p>{confidence}</section>")


def map_figures(pair: PairAnalysis, method: str, kind: MapKind, names: Sequence[str], normalisation: str,
                alpha: float) -> str:
    """Both faces' maps of one method, each with its colour bar, scale line and check."""
    maps = pair.maps[method]  # (2, S, S)
    checks = pair.checks.get(method) or [None, None]
    cells = []
    for side, scale in enumerate(pair_scales(maps, kind, normalisation)):
        picture = _shrunk(on_photo(pair.face(side), maps[side], scale, alpha))
        check = checks[side]
        note = (f"<p class='check {'ok' if check.ok else 'failed'}'>{esc(check.text)}</p>" if check else "")
        cells.append(f"<figure class='map'><figcaption class='title'>{esc(names[side])}</figcaption>"
                     f"<img class='overlay' src='{data_uri(picture)}' alt='{esc(method)} map of {esc(names[side])}'>"
                     f"<img class='bar' src='{data_uri(bar(scale, 160, count=3), 480)}' alt='colour bar'>"
                     f"<figcaption class='scale'>{esc(scale.caption())}</figcaption>{note}</figure>")
    reading = f"<p class='reading'>{esc(SIGN_READING)}</p>" if kind.signed else ""
    return (f"<div class='method'><h3>{esc(method)} <span class='unit'>({esc(kind.unit)})</span></h3>"
            f"<div class='pair'>{''.join(cells)}</div>{reading}</div>")


def _cell(value: float, scale: MapScale) -> str:
    r, g, b = (int(c) for c in colour(np.array([[value]]), scale)[0, 0])
    ink = "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"
    return f"<td style='background:rgb({r},{g},{b});color:{ink}'>{value:+.3f}</td>"


def decomposition_table(pair: PairAnalysis, names: Sequence[str]) -> str:
    """The (b+1) x (b+1) branch terms (rows: face a, columns: face b), diverging colours centred on 0."""
    dec = pair.branches.decomposition  # (b+1, b+1)
    scale = scale_of(dec, "decomposition", "share of cosine", True)
    labels = [f"b{i}" for i in range(dec.shape[0] - 1)] + ["bias"]
    head = "".join(f"<th>{esc(x)}</th>" for x in labels)
    rows = "".join(f"<tr><th>{esc(labels[i])}</th>{''.join(_cell(float(v), scale) for v in row)}</tr>"
                   for i, row in enumerate(dec))
    return (f"<table class='decomposition'><caption>branch terms of the cosine, sum {float(dec.sum()):.4f}</caption>"
            f"<tr><th class='corner'>rows: {esc(names[0])}<br>columns: {esc(names[1])}</th>{head}</tr>{rows}</table>"
            f"<p class='reading'>{esc(DECOMPOSITION_READING)}</p>")


def leave_one_out_table(pair: PairAnalysis) -> str:
    loo = pair.branches.leave_one_out  # (b,)
    cells = "".join(f"<td class='{'up' if v > pair.similarity else 'down'}'>{v:.3f}</td>" for v in loo)
    head = "".join(f"<th>without b{i}</th>" for i in range(len(loo)))
    return (f"<table class='loo'><caption>leave one branch out (full cosine {pair.similarity:.3f})</caption>"
            f"<tr>{head}</tr><tr>{cells}</tr></table><p class='reading'>{esc(LOO_READING)}</p>")


def quality_table(pair: PairAnalysis, names: Sequence[str]) -> str:
    """Per face: QAN quality per branch (CQA-Face), the embedding norm and how it was aligned."""
    faces = (pair.a, pair.b)
    b = pair.a.branches.count if pair.a.branches is not None else 0
    head = "".join(f"<th>q{i}</th>" for i in range(b))
    rows = ""
    for name, fa in zip(names, faces, strict=True):
        qs = "".join(f"<td>{q:.3f}</td>" for q in fa.branches.quality) if fa.branches is not None else ""
        rows += f"<tr><th>{esc(name)}</th>{qs}<td>{fa.embedding_norm:.2f}</td><td>{esc(fa.align_method)}</td></tr>"
    return (f"<table class='quality'><caption>quality{' (QAN, per branch)' if b else ''}</caption>"
            f"<tr><th></th>{head}<th>norm</th><th>aligned by</th></tr>{rows}</table>")


def case_sheet(pair: PairAnalysis, facts: SheetFacts, kinds: Mapping[str, MapKind] | None = None,
               normalisation: str = SHARED_PAIR, alpha: float = 0.5) -> str:
    """The case sheet of ``pair`` as one self-contained HTML string (see the module docstring)."""
    kinds = kinds or {}
    names = (Path(facts.image).name or facts.image, Path(facts.other).name or facts.other)
    faces = "".join(_face(data_uri(fa.photo), n, "photo") for fa, n in zip((pair.a, pair.b), names, strict=True))
    maps = "".join(map_figures(pair, m, kinds.get(m) or kind_of({"name": m}), names, normalisation, alpha)
                   for m in pair.maps)
    columns = "two" if len(pair.maps) <= 4 else "three"  # methods a row: one A4 page holds up to six
    numbers = quality_table(pair, names)
    if pair.branches is not None:
        numbers = (f"<div class='branches'>{decomposition_table(pair, names)}</div>"
                   f"<div class='side'>{leave_one_out_table(pair)}{numbers}</div>")
    else:
        numbers += "<p class='reading'>a plain recognizer: no branch terms to split the cosine into</p>"
    title = f"{names[0]} vs {names[1]}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>Case sheet: {esc(title)}</title><style>{STYLE}</style></head>
<body><main class="sheet">
<header><h1>Case sheet: {esc(title)}</h1>
<p class="meta">model <b>{esc(facts.model)}</b> · weights {esc(facts.digest)} · {esc(facts.date)}</p></header>
<section class="top">{faces}{verdict_block(facts.verdict)}</section>
<section class="maps {columns}">{maps or "<p>no maps were asked for</p>"}</section>
<section class="numbers">{numbers}</section>
<footer><span>made by</span> <code>{esc(facts.command)}</code></footer>
</main></body></html>
"""


STYLE = """
*{box-sizing:border-box} body{margin:0;font:12px/1.35 system-ui,sans-serif;color:#111;background:#fff}
.sheet{max-width:190mm;margin:0 auto;padding:6mm 0}
h1{font-size:17px;margin:0 0 2px} h3{font-size:12px;margin:0 0 2px} .unit{font-weight:normal;color:#555}
.meta{margin:0 0 6px;color:#444;font-size:11px;overflow-wrap:anywhere}
.top{display:flex;gap:4mm;align-items:flex-start}
figure{margin:0} figure.photo img{height:36mm;width:auto;max-width:55mm;display:block;border:1px solid #ccc}
figure figcaption{font-size:10px;color:#333;overflow-wrap:anywhere;max-width:55mm}
.verdict{flex:1;border-left:4px solid #888;padding:0 0 0 3mm;min-width:0}
.verdict.same{border-color:#1b7f3b} .verdict.different{border-color:#b00020}
.verdict .words{font-size:18px;font-weight:bold;margin:0} .verdict p{margin:1px 0;overflow-wrap:anywhere}
.verdict.same .words{color:#1b7f3b} .verdict.different .words{color:#b00020}
.maps{display:flex;flex-wrap:wrap;gap:2mm 5mm;margin-top:3mm}
.maps{--map:38mm} .maps.three{--map:29mm} .method{width:calc(2 * var(--map) + 2mm)} .pair{display:flex;gap:2mm}
figure.map{width:var(--map)} figure.map img.overlay{width:var(--map);height:auto;max-height:var(--map);object-fit:contain;
 display:block} figure.map img.bar{width:var(--map);display:block} .scale{font-size:9px} .title{font-weight:bold}
.check{font-size:9px;margin:0} .check.ok{color:#1b7f3b} .check.failed{color:#b00020}
.reading{font-size:9.5px;color:#333;margin:1px 0 2px}
.numbers{display:flex;gap:5mm;margin-top:3mm;align-items:flex-start} .branches{width:95mm} .side{flex:1;min-width:0}
table{border-collapse:collapse;font-size:10px;margin-bottom:1mm} caption{text-align:left;font-weight:bold}
td,th{border:1px solid #ddd;padding:1px 4px;text-align:center} th.corner{font-weight:normal;font-size:9px;text-align:left}
.quality th{overflow-wrap:anywhere;max-width:35mm} .loo td.up{font-weight:bold} .quality td{white-space:nowrap}
footer{margin-top:3mm;font-size:9px;color:#444;overflow-wrap:anywhere} code{font-size:9px}
@page{size:A4;margin:10mm}
@media print{.sheet{max-width:none;width:190mm;padding:0} body{-webkit-print-color-adjust:exact;print-color-adjust:exact}
 .method,.numbers,.top{break-inside:avoid}}
"""


def write_sheet(path: str | Path, page: str) -> Path:
    """Write the HTML of :func:`case_sheet` to ``path`` (its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def to_pdf(html_path: str | Path, pdf_path: str | Path, browser: str | None = None, timeout: float = 120.0) -> Path | None:
    """Print the sheet to PDF with headless Chromium (A4 from its print stylesheet); None when none is installed.

    Raises:
        RuntimeError: the browser ran but wrote no PDF (its last line says why).
    """
    exe = browser or next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if exe is None:
        return None
    pdf_path = Path(pdf_path).resolve()
    pdf_path.unlink(missing_ok=True)  # a PDF from an earlier run must not pass for this one
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
           "--no-pdf-header-footer", f"--print-to-pdf={pdf_path}", Path(html_path).resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if not pdf_path.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{Path(exe).name} wrote no PDF: {last}")
    return pdf_path
