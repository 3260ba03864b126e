"""The dashboard header's two lines, as HTML: the model every tab shows, and the current face's
overall quality (or, for a plain recognizer, its embedding norm), after its no-face warning; and
the placeholder a tab shows until its view is built."""

from __future__ import annotations

import ipywidgets as W

from cqa_core.explain.render import overall_quality
from cqa_core.recognizers.registry import DEFAULT
from workbench.views.markup import escape

UNTRAINED = ("<span class='cqa-untrained' style='background:#ffd54f;padding:2px 8px;margin-left:12px'>"
             "untrained model: maps and scores are not meaningful yet</span>")


def model_html(session) -> str:
    """The model every tab shows (the default's banner when it is untrained)."""
    info = session.info()
    default = session.current == DEFAULT
    what = session.description if default else info["description"]
    return (f"<h3 style='margin:4px 0'>CQA-Face Workbench</h3><span>model: {escape(info['name'])} "
            f"({escape(what)})</span>{UNTRAINED if default and session.untrained else ''}")


def no_face_html(note: str) -> str:
    """A no-face warning (``data.align.no_face_note``) as the header and the Pair tab's rows show it."""
    return f"<div class='cqa-no-face' style='color:#a04000;font-weight:bold'>{escape(note)}</div>"


def quality_html(name: str, fa, no_face: str | None) -> str:
    """The face's overall quality (``explain.quality.overall_quality``; a plain recognizer's reading is
    its embedding norm, named as such), after the no-face warning when MTCNN found no face."""
    warning = no_face_html(no_face) if no_face else ""
    br = fa.branches
    if br is None:
        return (f"{warning}<span>face: <b>{escape(name)}</b> &nbsp; embedding norm <b class='cqa-embedding-norm'>"
                f"{fa.embedding_norm:.2f}</b> (a plain model's quality reading: it has no QAN)</span>")
    q = float(overall_quality(br.quality, br.attention))
    branches = " ".join(f"{v:.2f}" for v in br.quality)
    return (f"{warning}<span>face: <b>{escape(name)}</b> &nbsp; overall quality <b class='cqa-overall-quality'>"
            f"{q:.2f}</b> (attention-weighted S&#770;; branches {branches})</span>")


def placeholder(tab: str) -> W.HTML:
    """What tab ``tab`` shows until its view is built: its name and a loading note, at full width."""
    w = W.HTML(f"<div class='cqa-tab-placeholder' data-tab='{escape(tab)}' style='padding:24px;font-size:15px;"
               f"color:#444;min-height:200px'><b>{escape(tab)}</b><br>loading the {escape(tab)} tab: a few "
               "seconds the first time it opens ...</div>", layout=W.Layout(width="100%"))
    w.add_class("cqa-tab-loading")
    return w
