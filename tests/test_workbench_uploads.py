"""Uploads are first-class in the dashboard: a thumbnail marked "yours" among the viewer's own,
selectable again after another face, counted on the upload button, removable."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

import tests.test_workbench_views as views

gallery, wb, upload = views.gallery, views.wb, views.upload  # the views' fixtures (pytest finds them by name)


def png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (300, 240, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def yours(wb) -> list[str]:
    """The tooltips (full names) of the thumbnails marked "yours", in gallery order."""
    return [box.children[1].tooltip for box in wb.gallery.children if "cqa-yours-box" in box._dom_classes]


def test_an_upload_joins_the_thumbnails_marked_yours_and_can_be_selected_again(wb):
    assert yours(wb) == [] and len(wb.upload.value) == 0
    upload(wb, "mine.png", png_bytes(1))
    upload(wb, "also.png", png_bytes(2))
    assert wb.messages.last_error is None, wb.messages.widget.value
    assert yours(wb) == ["upload: mine.png", "upload: also.png"]
    assert "yours" in wb.gallery.children[0].children[2].children[0].value
    # the button's count is the number of uploads this viewer holds; no bytes stay in the widget
    assert len(wb.upload.value) == 2 and all(len(item["content"]) == 0 for item in wb.upload.value)
    wb.select("Person 2")
    wb.gallery.children[0].children[1].click()  # back to the first upload through its thumbnail
    assert wb.current.name == "upload: mine.png" and wb.messages.last_error is None
    # a bad upload leaves the count as it was
    upload(wb, "notes.txt", b"shopping list\n")
    assert "notes.txt" in wb.messages.widget.value and len(wb.upload.value) == 2
    # the same name again replaces the photo, not a second thumbnail
    upload(wb, "mine.png", png_bytes(3))
    assert yours(wb) == ["upload: mine.png", "upload: also.png"] and len(wb.upload.value) == 2


def test_a_viewer_removes_an_upload(wb):
    upload(wb, "mine.png", png_bytes(1))
    upload(wb, "also.png", png_bytes(2))
    wb.second.value = "upload: mine.png"
    wb.select("upload: mine.png")
    wb.gallery.children[0].children[3].click()  # remove mine.png
    assert wb.messages.last_error is None, wb.messages.widget.value
    assert yours(wb) == ["upload: also.png"] and len(wb.upload.value) == 1
    assert "upload: mine.png" not in wb.faces and "upload: mine.png" not in wb.second.options
    assert wb.current.name != "upload: mine.png" and (wb.other is None or wb.other.name != "upload: mine.png")
    assert "upload: mine.png" not in [f.name for f in wb.views[2].gallery()]  # gone from the gallery scans
    wb.gallery.children[0].children[3].click()  # and the last one
    assert yours(wb) == [] and len(wb.upload.value) == 0
