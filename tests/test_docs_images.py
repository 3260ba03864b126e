"""The documentation's pictures (``make docs-images``, tools/docs_images.py): exactly the script's
shots are in docs/images, each a picture Pillow reads, each under 300 KB, all together under 3 MB.

Fast and without a browser: it checks the committed files, not how they were made.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
MAX_EACH = 300 * 1024
MAX_TOTAL = 3 * 1024 * 1024


def shots() -> tuple[str, ...]:
    """``SHOTS`` of tools/docs_images.py (a script, not a package: loaded by path)."""
    spec = importlib.util.spec_from_file_location("docs_images", ROOT / "tools" / "docs_images.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SHOTS


def test_the_folder_holds_exactly_the_scripts_shots():
    on_disk = sorted(p.name for p in IMAGES.iterdir() if not p.name.startswith("."))
    assert on_disk == sorted(shots())


@pytest.mark.parametrize("name", shots())
def test_each_picture_is_a_small_webp_or_png(name):
    path = IMAGES / name
    assert path.is_file(), f"{path} is missing: run make docs-images"
    assert path.stat().st_size < MAX_EACH, f"{name}: {path.stat().st_size} bytes"
    with Image.open(path) as im:
        assert im.format in ("WEBP", "PNG"), im.format
        im.load()  # the whole file decodes
        assert im.width >= 400 and im.height >= 300, im.size


def test_all_pictures_together_are_under_3_mb():
    assert sum(p.stat().st_size for p in IMAGES.iterdir() if p.is_file()) < MAX_TOTAL


def test_every_picture_is_shown_on_some_page():
    pages = [*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]
    text = "\n".join(p.read_text(encoding="utf-8") for p in pages)
    unused = [name for name in shots() if f"images/{name}" not in text]
    assert not unused, f"pictures no page shows: {unused}"


def test_the_reading_page_walks_through_every_tab_in_order_each_with_a_picture():
    """docs/reading.md: one '## TAB' section per dashboard tab, in the tabs' order, each with a screenshot."""
    from workbench.app import TAB_NAMES

    text = (ROOT / "docs" / "reading.md").read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    titles = [s.splitlines()[0].strip() for s in sections]
    tabs = [t for t in titles if t in TAB_NAMES]
    assert tabs == list(TAB_NAMES), titles
    for section in sections:
        title = section.splitlines()[0].strip()
        if title in TAB_NAMES:
            pictures = re.findall(r"!\[[^\]]+\]\(images/([^)]+)\)", section)
            assert pictures, f"the {title} section shows no screenshot"
            assert all((IMAGES / p).is_file() for p in pictures), pictures
