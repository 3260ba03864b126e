"""This viewer's uploads as first-class faces: a thumbnail marked "yours" in the gallery, selectable
again, removable, and counted on the upload button.

The upload box (an ipywidgets ``FileUpload``) shows ``upload face (N)`` with N the number of files
in its value. The bytes of an upload are dropped from the widget once decoded (the face keeps the
pixels, in this kernel's memory only), so the value is then set to one empty placeholder per face
this viewer holds: the button counts the viewer's uploads, and no photo stays in the widget.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import ipywidgets as W
import numpy as np

from workbench.views.common import png
from workbench.views.markup import escape

YOURS = "yours"


def placeholders(names: list[str]) -> tuple[dict, ...]:
    """One empty file entry per upload the viewer holds (the upload button's count), no bytes."""
    now = datetime.now(timezone.utc)
    return tuple({"name": n, "type": "", "size": 0, "content": memoryview(b""), "last_modified": now} for n in names)


def is_placeholder(item: dict) -> bool:
    """True for an entry set by :func:`placeholders` (the observer sees those too: nothing to decode)."""
    return len(item.get("content", b"")) == 0 and item.get("size", 0) == 0


def yours_thumb(name: str, photo: np.ndarray, select: Callable[[], None], remove: Callable[[], None]) -> W.VBox:
    """A thumbnail of an upload: the photo, its name (click selects it), "yours" and a remove button."""
    image = W.Image(format="png", width=64, value=png(photo, 64))
    short = name.removeprefix("upload: ")
    button = W.Button(description=short[:14], tooltip=name,
                      layout=W.Layout(width="74px", height="24px", min_height="24px", padding="0"))
    button.add_class("cqa-thumb")
    button.add_class("cqa-yours-thumb")
    button.on_click(lambda _: select())
    mark = W.HTML(f"<span class='cqa-yours' style='font-size:11px;color:#1b5e20;font-weight:bold'>{escape(YOURS)}</span>")
    drop = W.Button(description="remove", tooltip=f"remove {name} from this session",
                    layout=W.Layout(width="74px", height="22px", min_height="22px", padding="0"))
    drop.add_class("cqa-upload-remove")
    drop.on_click(lambda _: remove())
    box = W.VBox([image, button, W.HBox([mark], layout=W.Layout(justify_content="center")), drop],
                 layout=W.Layout(min_height="140px", overflow="visible"))
    box.add_class("cqa-yours-box")
    return box
