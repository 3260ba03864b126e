"""Regenerate the documentation's pictures from the real dashboard: ``make docs-images``.

    PYTHONPATH=. .venv/bin/python tools/docs_images.py [--only face-tab ...] [--out docs/images]

Every picture under ``docs/images`` is a screenshot of the running workbench (``cqa workbench``:
analysis service + Voila), taken by the same headless Chromium the browser tests drive
(``tests/support/headless.py``), with the bundled default model, on a fixed list of LFW photos
(:data:`FACES`; not the default gallery, so each picture's alt text and the note below the pictures in
README.md and docs say "hand-picked LFW gallery"). The gallery is a temporary folder of symbolic links to those photos under
``<data root>/lfw-deepfunneled``: nothing is copied, and no raw photo enters the repository. Each
shot opens its own page, sets the dashboard up (face, second face, tab, model), waits until every
map has drawn and no "computing" / "loading" note is left, screenshots the dashboard and writes it
as WebP, scaled down until it is under :data:`MAX_BYTES`.

The two-recognizers shot adds dlib (``--second-model``) through the model picker. A verdict needs
the model's own LFW threshold, computed once per model in a subprocess and cached under
``<cache>/thresholds/`` (a minute or two each the first time): the script waits for it.

The two Benchmark shots need benchmark runs: ``--runs DIR`` names a folder of them; without it the
script records two into its temporary folder first, ``cqa eval --limit`` :data:`RUN_PAIRS` LFW
pairs under the default model and under ``--second-model`` (a few minutes on a CPU), and shows the
first compared with the second, with its face map drawn; :data:`PARTS` cuts the tall tab into two
pictures. The workbench then lists those runs for every shot, so the Pair tab's verdict carries the
calibrated line of the default model's run.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.headless import CAM  # noqa: E402 - after the checkout is on sys.path

OUT = ROOT / "docs" / "images"

FACES = (
    "George_W_Bush_0001", "George_W_Bush_0002", "Colin_Powell_0004", "Colin_Powell_0006",
    "Serena_Williams_0002", "Serena_Williams_0004", "Hugo_Chavez_0001", "Laura_Bush_0001", "Tony_Blair_0002",
)
"""The gallery: LFW deep-funneled photos (``Name/Name_NNNN.jpg``), shown as "George W Bush 0001" etc."""
FACE = "Serena Williams 0002"
"""The Face tab's face."""
PAIR = ("George W Bush 0001", "George W Bush 0002")
"""The Pair tab's two faces (the same person: cos 0.74 under the default model)."""
MASKED = "Colin Powell 0004"
"""The Mask lab's face."""
MASK_KIND = "surgical_blue"
PAIR_METHOD = "occlusion"
"""The two-recognizers shot's maps: a black-box method both CQA-Face and dlib support."""

RUN_PAIRS = 200
"""LFW View 2 pairs of each benchmark run the script records (spread evenly over the 6,000)."""

MAX_BYTES = 300_000
"""Each picture is at most this big (the total stays under 3 MB)."""
VIEWPORT = {"width": 1300, "height": 1000}
TALL = {"width": 1300, "height": 2400}
"""The Benchmark shots' first viewport: its charts are drawn in view (below the fold they may come out empty)."""
TO_TOP = "() => { window.scrollTo(0, 0); for (const e of document.querySelectorAll('*')) { if (e.scrollTop) e.scrollTop = 0; } }"
LONG = 900_000  # ms: a model's first LFW threshold takes minutes on a busy CPU


def say(text: str) -> None:
    print(f"[docs-images {time.strftime('%H:%M:%S')}] {text}", flush=True)


# ---- the gallery --------------------------------------------------------------------------------
def lfw_root() -> Path:
    from cqa_core.settings import Settings

    return Settings.from_env().lfw


def make_gallery(folder: Path, lfw: Path) -> Path:
    """A flat folder of symbolic links to :data:`FACES` (the photos stay where they are)."""
    missing = [n for n in FACES if not (lfw / n.rsplit("_", 1)[0] / f"{n}.jpg").is_file()]
    if missing:
        raise SystemExit(f"docs-images: LFW deep-funneled is missing at {lfw} ({len(missing)} of the "
                         f"{len(FACES)} photos, e.g. {missing[0]}.jpg): fetch it first (cqa data fetch lfw; docs/data.md), "
                         "or point CQA_DATA at the folder holding lfw-deepfunneled/")
    folder.mkdir(parents=True, exist_ok=True)
    for n in FACES:
        (folder / f"{n}.jpg").symlink_to(lfw / n.rsplit("_", 1)[0] / f"{n}.jpg")
    return folder


# ---- the benchmark runs -------------------------------------------------------------------------
def record_runs(folder: Path, second: str, env: dict[str, str]) -> Path:
    """Two runs of the same :data:`RUN_PAIRS` LFW pairs in ``folder``: ``cqa-lfw`` (default model), ``NAME-lfw``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in ((f"{second}-lfw", second), ("cqa-lfw", None)):  # the default model's run last: newest, listed first
        say(f"recording the benchmark run {name} ({RUN_PAIRS} LFW pairs; a few minutes the first time)")
        cmd = [sys.executable, "-m", "cqa_core.cli", "eval", "--limit", str(RUN_PAIRS), "--device", "cpu",
               "--out", str(folder / name), *(["--model", model] if model else [])]
        subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    return folder


# ---- the page -----------------------------------------------------------------------------------
BUSY_JS = r"""() => {
    const loading = [...document.querySelectorAll('.cqa-loading')].some(e => e.offsetParent !== null);
    const msg = document.querySelector('.cqa-errors')?.innerText || '';
    const page = document.querySelector('.cqa-dashboard')?.innerText || '';
    return !loading && !/computing|loading|busy|Error/i.test(msg) && !/being computed/i.test(page);
}"""
"""True when nothing on the page is still loading or computing."""


def open_page(browser, url: str, viewport: dict[str, int] = VIEWPORT):
    page = browser.new_page(viewport=viewport, device_scale_factor=1)
    page.goto(url, timeout=240_000)
    page.wait_for_selector(f"{CAM}[src^='blob:']", timeout=240_000)
    return page


def open_tab(page, name: str) -> None:
    page.locator(".cqa-tabs .lm-TabBar-tab", has_text=name).first.click()


def select(page, name: str) -> None:
    """Make ``name`` the current face (click its thumbnail) and wait for its CAMs."""
    if page.inner_text(".cqa-selected-name") == name:
        return
    old = page.locator(CAM).first.get_attribute("src")
    page.locator(f"button.cqa-thumb[title='{name}']").click()
    page.wait_for_function("([sel, old, name]) => { const e = document.querySelector(sel); "
                           "return e && e.src !== old && document.querySelector('.cqa-selected-name')?.innerText === name; }",
                           arg=[CAM, old, name], timeout=120_000)


def second_face(page, name: str) -> None:
    page.locator(".cqa-second select").select_option(label=name)


def settle(page, timeout: float = LONG) -> None:
    """Wait until no note says loading or computing, then let plotly finish drawing."""
    page.wait_for_function(BUSY_JS, timeout=timeout, polling=500)
    page.wait_for_timeout(1500)
    page.wait_for_function(BUSY_JS, timeout=timeout, polling=500)


def all_blobs(page, selector: str, n: int, timeout: float = 120_000) -> None:
    """Wait until ``n`` images under ``selector`` show a picture."""
    page.wait_for_function("([sel, n]) => { const ims = [...document.querySelectorAll(sel)]; return ims.length >= n && "
                           "ims.every(e => e.src.startsWith('blob:') && e.complete && e.naturalWidth > 0); }",
                           arg=[selector, n], timeout=timeout)


def pair_setup(page) -> None:
    select(page, PAIR[0])
    second_face(page, PAIR[1])
    open_tab(page, "Pair")
    page.wait_for_function("n => [...document.querySelectorAll('.cqa-pair-row .cqa-pair-title')]"
                           ".some(e => e.innerText.includes(n))", arg=PAIR[1], timeout=120_000)
    all_blobs(page, ".cqa-pair-row img.cqa-pair-cam", 2)
    page.wait_for_selector(".cqa-pair-matrix .heatmaplayer", timeout=120_000)
    say("  waiting for the default model's verdict (its LFW threshold: computed once per service start, seconds to minutes)")
    page.wait_for_selector(".cqa-pair-verdict .cqa-threshold", timeout=LONG)


# ---- the shots ----------------------------------------------------------------------------------
def shot_face(page, _: argparse.Namespace) -> None:
    select(page, FACE)
    all_blobs(page, CAM, 4)
    all_blobs(page, "img.cqa-source-image", 1)


def shot_pair(page, _: argparse.Namespace) -> None:
    pair_setup(page)


def shot_mask(page, _: argparse.Namespace) -> None:
    select(page, MASKED)
    open_tab(page, "Mask lab")
    page.wait_for_selector(".cqa-mask-values .cqa-mask-q", timeout=120_000)
    page.locator(".cqa-mask-kind select").select_option(label=MASK_KIND)
    page.locator("button.cqa-mask-apply").click()
    page.wait_for_selector(".cqa-mask-table", timeout=120_000)
    all_blobs(page, "img.cqa-mask-image", 2)
    all_blobs(page, "img.cqa-mask-cam", 4)


def shot_two(page, args: argparse.Namespace) -> None:
    say(f"  adding {args.second_model} through the model picker")
    page.locator(".cqa-model-path input").fill(args.second_model)
    page.locator("button.cqa-model-add").click()
    page.wait_for_function("() => document.querySelectorAll('.cqa-model select option').length >= 2 || "
                           "/Error/.test(document.querySelector('.cqa-errors')?.innerText || '')", timeout=300_000)
    if "Error" in page.inner_text(".cqa-errors"):
        raise RuntimeError(f"the dashboard could not add {args.second_model}: {page.inner_text('.cqa-errors')}")
    pair_setup(page)
    beside = page.locator(".cqa-pair-beside select")
    label = [o.replace("\xa0", " ") for o in beside.locator("option").all_inner_texts()
             if "no second model" not in o.replace("\xa0", " ")][0]  # ipywidgets writes &nbsp; for spaces
    blank = [page.locator(".cqa-pair-row-other img.cqa-pair-cam").nth(i).get_attribute("src") or "" for i in range(2)]
    beside.select_option(label=label)
    if beside.input_value() != label:
        raise RuntimeError(f"could not pick {label!r} beside the default model")
    page.wait_for_selector(".cqa-pair-verdict-other .cqa-similarity", timeout=300_000)
    page.wait_for_function("old => [...document.querySelectorAll('.cqa-pair-row-other img.cqa-pair-cam')]"
                           ".every((e, i) => e.src.startsWith('blob:') && e.src !== old[i])", arg=blank, timeout=300_000)
    # a black-box method, so that both models show maps (Grad-CAM needs a white-box model)
    say(f"  {PAIR_METHOD} maps of both faces under both models (a minute or so on a CPU)")
    old = [page.locator(".cqa-pair-row-other img.cqa-pair-cam").nth(i).get_attribute("src") for i in range(2)]
    page.locator(".cqa-pair-source button", has_text=PAIR_METHOD).click()
    page.wait_for_function("([old, m]) => [...document.querySelectorAll('.cqa-pair-row-other img.cqa-pair-cam')]"
                           ".every((e, i) => e.src !== old[i]) && [...document.querySelectorAll('.cqa-pair-title')]"
                           ".every(e => e.innerText.includes(m))", arg=[old, PAIR_METHOD], timeout=LONG)
    say(f"  waiting for {label}'s verdict (its LFW threshold: minutes the first time)")
    page.wait_for_function("() => { const v = document.querySelector('.cqa-pair-verdict-other')?.innerText || ''; "
                           "return document.querySelector('.cqa-pair-verdict-other .cqa-threshold') || "
                           "/no verdict/.test(v); }", timeout=LONG)


def shot_diversity(page, _: argparse.Namespace) -> None:
    select(page, FACE)
    open_tab(page, "Diversity")
    page.wait_for_function("() => [...document.querySelectorAll('.cqa-diversity-matrix .js-plotly-plot')]"
                           ".some(g => g.data && g.data[0] && g.data[0].type === 'heatmap' && "
                           "g.data[0].z.some(r => r.some(v => v !== 0)))", timeout=120_000)
    # the CAL histogram over the gallery: one click, then its bars
    page.locator("button.cqa-diversity-scan").click()
    page.wait_for_function("n => document.querySelector('.cqa-diversity-hist')?.textContent"
                           ".includes(`over ${n} gallery faces`)", arg=len(FACES), timeout=300_000)


def shot_quality(page, _: argparse.Namespace) -> None:
    select(page, FACE)
    open_tab(page, "Quality")
    page.wait_for_selector(".cqa-quality-values .cqa-q", timeout=120_000)
    page.wait_for_function("() => document.querySelectorAll('.cqa-quality-bars .bars .point path').length >= 4",
                           timeout=120_000)
    # the gallery faces lowest on branch 0, with that branch's attention
    page.locator("button.cqa-quality-scan").click()
    all_blobs(page, "img.cqa-quality-lowest", 6, timeout=300_000)


def shot_benchmark(page, args: argparse.Namespace) -> None:
    open_tab(page, "Benchmark")
    page.wait_for_selector(".cqa-bench-accuracy", timeout=120_000)
    runs = page.locator(".cqa-bench-run select option").all_inner_texts()
    mine = next((o for o in runs if o.replace("\xa0", " ").startswith("cqa-lfw")), None)
    other = next((o for o in runs if o.replace("\xa0", " ").startswith(f"{args.second_model}-lfw")), None)
    if mine is None or other is None:
        raise RuntimeError(f"the runs folder lacks cqa-lfw or {args.second_model}-lfw: {runs}")
    page.locator(".cqa-bench-run select").select_option(label=mine)
    page.wait_for_function("() => /default model/.test(document.querySelector('.cqa-bench-label')?.innerText || '')",
                           timeout=120_000)
    page.locator(".cqa-bench-other select").select_option(label=other)
    page.wait_for_selector(".cqa-bench-p", timeout=120_000)
    say("  the run's face map (UMAP: tens of seconds the first time)")
    page.locator("button.cqa-bench-map-button").click()
    page.wait_for_function("() => [...document.querySelectorAll('.cqa-bench-map .js-plotly-plot')]"
                           ".some(g => g.data && g.data[0] && g.data[0].x && g.data[0].x.length > 0)", timeout=LONG)
    page.wait_for_timeout(2000)  # the data grids' canvases draw


STEPS: dict[str, tuple[str, Callable]] = {
    "face-tab.webp": ("Face tab: a face, its b branch CAMs and quality q per branch", shot_face),
    "pair-tab.webp": ("Pair tab: two photos of one person and the similarity decomposition", shot_pair),
    "mask-lab.webp": ("Mask lab: a synthetic mask, branch qualities before / after", shot_mask),
    "two-recognizers.webp": ("Pair tab: CQA-Face and a second recognizer side by side", shot_two),
    "diversity-tab.webp": ("Diversity tab: CAL's branch-to-branch matrix", shot_diversity),
    "quality-tab.webp": ("Quality tab: QAN's quality per branch", shot_quality),
    "benchmark-tab.webp": ("Benchmark tab: a run's curves, reliability, accuracy by slice and its errors",
                           shot_benchmark),
    "benchmark-compare.webp": ("Benchmark tab: a second run compared (McNemar, scatter) and the face map",
                               shot_benchmark),
}
PARTS: dict[str, tuple[str, str]] = {
    "benchmark-tab.webp": (".cqa-dashboard", ".cqa-bench-grid"),
    "benchmark-compare.webp": (".cqa-bench-compare", ".cqa-bench-map"),
}
"""A shot's part of the page, (top, bottom): from the top of the first element to the bottom of the second,
as wide as the first; every other shot is the whole dashboard (the Benchmark tab is too tall for one picture)."""
SHOTS = tuple(STEPS)
"""Every picture this script makes, as named under ``docs/images`` (tests/test_docs_images.py checks the folder)."""


# ---- the files ----------------------------------------------------------------------------------
def webp(png: bytes, max_bytes: int = MAX_BYTES) -> tuple[bytes, tuple[int, int]]:
    """The screenshot as WebP (quality 80, method 6), scaled down by 10 % steps until under ``max_bytes``."""
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    scale = 1.0
    while True:
        size = (round(im.width * scale), round(im.height * scale))
        out = io.BytesIO()
        (im if scale == 1.0 else im.resize(size, Image.LANCZOS)).save(out, "WEBP", quality=80, method=6)
        if out.tell() < max_bytes or scale < 0.3:
            return out.getvalue(), size
        scale *= 0.9


def take(browser, url: str, name: str, args: argparse.Namespace, out: Path) -> int:
    what, step = STEPS[name]
    say(f"{name}: {what}")
    page = open_page(browser, url, TALL if name in PARTS else VIEWPORT)
    try:
        try:
            step(page, args)
            settle(page)
        except Exception:
            failed = ROOT / "artifacts" / "docs-images" / f"{name[:-5]}-failed.png"
            failed.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(failed), full_page=True)
            say(f"{name} failed; the page is in {failed}; its messages: {page.inner_text('.cqa-errors')!r}")
            raise
        page.mouse.move(0, 0)  # no hover highlight, no focus ring
        page.evaluate("() => document.activeElement?.blur()")
        text = page.inner_text(".cqa-dashboard")
        if "Error" in page.inner_text(".cqa-errors") or "Traceback" in text:
            raise RuntimeError(f"{name}: the dashboard shows an error: {page.inner_text('.cqa-errors')}")
        # a viewport as tall as the dashboard: Voila scrolls inside the page, so a taller element
        # would come out cut at the viewport's bottom; everything scrolled back to the top first (a
        # click further down scrolls the page, and the part above would come out blank)
        page.evaluate(TO_TOP)
        box = page.locator(".cqa-dashboard").bounding_box()
        page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"],
                                                                          int(box["y"] + box["height"]) + 40)})
        page.evaluate(TO_TOP)
        page.wait_for_timeout(1000)
        if name in PARTS:
            top, bottom = (page.locator(sel).first.bounding_box() for sel in PARTS[name])
            clip = {"x": top["x"], "y": top["y"], "width": top["width"],
                    "height": bottom["y"] + bottom["height"] - top["y"]}
            png = page.screenshot(clip=clip, timeout=60_000)
        else:
            png = page.locator(".cqa-dashboard").screenshot(timeout=60_000)
    finally:
        page.close()
    data, size = webp(png)
    if len(data) >= MAX_BYTES:
        raise RuntimeError(f"{name}: {len(data)} bytes even at {size}: over {MAX_BYTES}")
    (out / name).write_bytes(data)
    say(f"{name}: {size[0]} x {size[1]} px, {len(data) / 1000:.0f} kB -> {out / name}")
    return len(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help=f"only these shots (with or without .webp): {', '.join(s[:-5] for s in SHOTS)}")
    p.add_argument("--out", type=Path, default=OUT, help="the folder to write (default docs/images)")
    p.add_argument("--second-model", default="dlib",
                   help="the recognizer the two-recognizers shot adds and the Benchmark shot's second run uses "
                        "(what the model picker accepts: dlib, a .onnx path)")
    p.add_argument("--runs", type=Path, default=None,
                   help="a folder holding the runs cqa-lfw and SECOND-lfw (default: recorded into a temporary folder)")
    args = p.parse_args(argv)
    names = [n if n.endswith(".webp") else f"{n}.webp" for n in (args.only or SHOTS)]
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        p.error(f"unknown shot {unknown[0]}: choose from {', '.join(SHOTS)}")

    from tests.support.headless import CHROMIUM, launch_chromium, running_workbench

    if CHROMIUM is None:
        raise SystemExit("docs-images: no chromium on PATH (Debian: apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("docs-images: the playwright package is missing (pip install -e '.[dev]')") from None
    lfw = lfw_root()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="cqa-docs-images-") as tmp:
        gallery = make_gallery(Path(tmp) / "gallery", lfw)
        env = {k: os.environ[k] for k in ("CQA_DATA", "CQA_CACHE") if k in os.environ}
        runs = args.runs or record_runs(Path(tmp) / "runs", args.second_model, env)
        log = ROOT / "artifacts" / "docs-images" / "workbench.log"
        say(f"starting cqa workbench (default model, {len(FACES)} LFW faces from {lfw}); log in {log}")
        with running_workbench(log, preheat=True, CQA_FACES=str(gallery), CQA_GALLERY_PEOPLE=str(len(FACES)),
                               CQA_RUNS=str(runs), **env) as (url, _, _pid):
            say(f"workbench up after {time.perf_counter() - t0:.0f} s")
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                try:
                    for name in names:
                        sizes[name] = take(browser, url, name, args, args.out)
                finally:
                    browser.close()
    for name in SHOTS:
        f = args.out / name
        if f.is_file():
            print(f"{f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}  {f.stat().st_size / 1000:.0f} kB")
    total = sum((args.out / n).stat().st_size for n in SHOTS if (args.out / n).is_file())
    say(f"done in {time.perf_counter() - t0:.0f} s; {len(sizes)} made, {total / 1e6:.2f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
