"""The dashboard: header, a message banner under it, gallery + upload + second face on the left, six tabs.

    from workbench.start import open_workbench
    open_workbench(settings).widget   # last line of a notebook cell, or of dashboard.ipynb for Voila

Clicking a thumbnail re-renders the visible tab at once and marks the others stale; a stale tab
re-renders, in place, when it is opened (so a click costs one tab's work, not five). A tab's
widgets join the page the first time it is opened.

Uploads stay with their viewer: they live in this kernel's memory only (``Session.upload_face``),
join this viewer's thumbnails marked "yours" (``workbench.views.uploads``: selectable again, removable,
counted on the upload button) and gallery scans (Diversity, Quality) and no one else's, and the
service drops their analyses when the kernel ends (``Session.close``). A photo in which MTCNN finds no face says
so in the header and the message area (``data.align.no_face_note``): its numbers describe the
centre of the photo.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import ipywidgets as W

from cqa_core.data.align import no_face_note
from cqa_core.data.imageio import load_image
from cqa_core.recognizers.registry import DEFAULT
from cqa_core.settings import Settings
from workbench.gallery import partner_of
from workbench.loading import HIDE_NOTICE, ready
from workbench.session import Face, Session
from workbench.views.common import BANNER_STYLE, Messages, png
from workbench.views.diversity import DiversityPanel
from workbench.views.face import FaceExplorer
from workbench.views.header import model_html, placeholder, quality_html
from workbench.views.markup import escape
from workbench.views.masklab import MaskLab
from workbench.views.pair import PairInspector
from workbench.views.picker import empty_message, path_hint, path_rule
from workbench.views.quality import QualityPanel
from workbench.views.uploads import is_placeholder, placeholders, yours_thumb

TAB_NAMES = ("Face", "Pair", "Diversity", "Quality", "Mask lab", "Benchmark")
THUMBS = 24


class Workbench:
    """The whole dashboard as one widget tree (``self.widget``)."""

    def __init__(self, settings: Settings | None = None, session: Session | None = None) -> None:
        """``session``: the viewer's session (``workbench.start.open_session``); or ``settings`` naming an analysis
        service, whose client the session then is."""
        if session is None and settings is None:
            raise ValueError("give the dashboard a session (workbench.start.open_workbench) or its settings")
        self.session = session or Session(settings)
        self.settings = self.session.settings
        self.messages = Messages(debug=self.settings.debug)
        self._lock = threading.RLock()
        self.faces: dict[str, Face] = {f.name: f for f in self.session.gallery()}
        self.uploads: list[str] = []  # names of this viewer's uploads in self.faces, oldest first
        self.current: Face | None = None
        self.other: Face | None = None
        self.timings: list[tuple[str, float]] = []
        self.no_face: str | None = None  # the current face's no-face note, kept in the message area
        gallery = lambda: list(self.faces.values())  # noqa: E731 - the gallery and this viewer's own uploads
        s, m = self.session, self.messages
        # a tab's view is built and attached when the tab is first opened: plotly cannot lay out a
        # figure first drawn inside a hidden tab, and the page has far fewer widgets to build at load
        self.factories = [lambda: FaceExplorer(s, m), lambda: PairInspector(s, m),
                          lambda: DiversityPanel(s, m, gallery),
                          lambda: QualityPanel(s, m, gallery, edc_results=self.settings.edc_results),
                          lambda: MaskLab(s, m), self._benchmark]
        self._quiet = False  # open_pair sets several pickers at once: their observers then redraw nothing
        self.built: dict[int, object] = {}
        self.stale = set(range(len(self.factories)))
        # until its view is built, a tab holds a placeholder with its name and a loading note, at full
        # width: the first click shows it at once (the browser switches tabs; the kernel builds meanwhile)
        self.slots = [W.Box([placeholder(name)], layout=W.Layout(width="100%")) for name in TAB_NAMES]
        self.tabs = W.Tab(children=self.slots, titles=TAB_NAMES, layout=W.Layout(flex="1 1 auto", min_width="760px"))
        self.tabs.add_class("cqa-tabs")
        self.tabs.observe(self.messages.guard(lambda _: self.refresh()), names="selected_index")
        hide_notice = W.HTML(HIDE_NOTICE + BANNER_STYLE)  # hides the first cell's "loading" note once this draws
        # messages in a banner under the header (sticky): an error is in view wherever its control is
        self.widget = W.VBox([self._header(), self.messages.widget, W.HBox([self._sidebar(), self.tabs]),
                              hide_notice])
        self.widget.add_class("cqa-dashboard")
        self.session.set_status(self._status)
        if self.faces:
            names = list(self.faces)
            self.second.value = partner_of(names[0], names)  # the same person's other photo
            if self.session.remote:  # the page draws now; the first face fills in when the service answers
                self.messages.info("loading the first face...")
                threading.Thread(target=self.messages.guard(self.select), args=(names[0],), daemon=True).start()
            else:
                self.messages.guard(self.select)(names[0])
        else:
            self.messages.info("no gallery folder found: upload a face photo on the left")

    def _status(self, text: str | None) -> None:
        """Busy / restart notes from the analysis service client (cleared when the call returns)."""
        if text:
            self.messages.info(text)
        elif self.messages.last_error is None:
            self.messages.clear()
            if self.no_face:
                self.messages.warn(self.no_face)

    # ---- layout ------------------------------------------------------------------------------
    def _header(self) -> W.VBox:
        self.header = W.HTML("")
        self.header.add_class("cqa-header")
        self._show_model()
        self.face_quality = W.HTML("")
        self.face_quality.add_class("cqa-face-quality")
        return W.VBox([self.header, self.face_quality])

    def _show_model(self) -> None:
        """The header: the model every tab shows."""
        self.header.value = model_html(self.session)

    def _show_quality(self, name: str) -> None:
        """The current face's overall quality in the header. When MTCNN found no face, the header and
        the message banner say so first: the numbers describe the centre of the photo."""
        fa = self.session.analyse(self.current)
        self.no_face = no_face_note(name, fa.align_method, self.current.align)
        if self.no_face:
            self.messages.warn(self.no_face)
        elif "cqa-warning" in self.messages.widget.value:  # the previous face's note
            self.messages.clear()
        self.face_quality.value = quality_html(name, fa, self.no_face)

    def _sidebar(self) -> W.VBox:
        self.search = W.Text(placeholder="search by name", continuous_update=True, layout=W.Layout(width="230px"))
        self.search.add_class("cqa-search")
        self.search.observe(self.messages.guard(lambda _: self._fill_gallery()), names="value")
        self.gallery = W.GridBox([], layout=W.Layout(grid_template_columns="repeat(3, 76px)", width="240px",
                                                     max_height="520px", overflow="auto"))
        self.gallery.add_class("cqa-gallery")
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="upload face")
        self.upload.add_class("cqa-upload")
        self.upload.observe(self.messages.guard(self._on_upload), names="value")
        self.second = W.Dropdown(options=list(self.faces), description="2nd face", layout=W.Layout(width="230px"))
        self.second.add_class("cqa-second")
        self.second.observe(self.messages.guard(self._on_second), names="value")
        self.selected = W.HTML("")
        self.selected.add_class("cqa-selected")
        self.model = W.Dropdown(options=self._model_options(), value=DEFAULT, description="model",
                                layout=W.Layout(width="230px"))
        self.model.add_class("cqa-model")
        self.model.observe(self.messages.guard(self._on_model), names="value")
        self.model_path = W.Text(placeholder=path_hint(self.session.any_model_path),
                                 tooltip=path_rule(self.session.any_model_path), layout=W.Layout(width="230px"))
        self.model_path.add_class("cqa-model-path")
        self.model_add = W.Button(description="add a model", layout=W.Layout(width="230px"))
        self.model_add.add_class("cqa-model-add")
        self.model_add.on_click(self.messages.guard(lambda _: self.add_model(self.model_path.value)))
        self._fill_gallery()
        return W.VBox([self.search, self.gallery, self.upload, self.second, self.selected, self.model,
                       self.model_path, self.model_add], layout=W.Layout(width="250px", flex="0 0 250px"))

    def _model_options(self) -> list[tuple[str, str]]:
        return [(info["name"], spec) for spec, info in self.session.models.items()]

    def _thumb(self, name: str, face: Face) -> W.VBox:
        if not hasattr(self, "_thumb_style"):  # one Layout / style shared by every thumbnail: fewer widget
            self._thumb_style = (W.Layout(width="74px", height="24px", min_height="24px", padding="0"),  # models
                                 W.Layout(min_height="92px", overflow="visible"), W.ButtonStyle())    # per page
        button_layout, box_layout, style = self._thumb_style
        image = W.Image(format="png", width=64, value=png(load_image(face.source), 64))
        button = W.Button(description=name[:14], tooltip=name, layout=button_layout, style=style)
        button.add_class("cqa-thumb")
        button.on_click(self.messages.guard(lambda _: self.select(name)))
        return W.VBox([image, button], layout=box_layout)

    def _fill_gallery(self) -> None:
        """This viewer's uploads (marked "yours"), then thumbnails of the first matches of the search box."""
        query = self.search.value.strip().lower()
        mine = [n for n in self.uploads if query in n.lower()]
        names = [n for n, f in self.faces.items() if isinstance(f.source, str) and query in n.lower()][:THUMBS]
        if not hasattr(self, "_thumbs"):
            self._thumbs: dict[str, W.VBox] = {}
        for n in mine:
            if n not in self._thumbs:
                self._thumbs[n] = yours_thumb(n, self.faces[n].source, self.messages.guard(lambda n=n: self.select(n)),
                                              self.messages.guard(lambda n=n: self.remove_upload(n)))
        names = mine + names
        for n in names:
            if n not in self._thumbs:
                try:
                    self._thumbs[n] = self._thumb(n, self.faces[n])
                except ValueError as exc:  # an unreadable gallery file: say so, skip it
                    self.messages.error(exc)
                    continue
        self.gallery.children = [self._thumbs[n] for n in names if n in self._thumbs]

    # ---- actions -----------------------------------------------------------------------------
    def select(self, name: str) -> None:
        """Make ``name`` the current face and re-render the visible tab."""
        with self._lock:  # a click and the first face's background load never interleave
            t0 = time.perf_counter()
            self.current = self.faces[name]
            self.selected.value = f"selected: <b class='cqa-selected-name'>{escape(name)}</b>"
            self.stale = set(range(len(self.factories)))
            self.refresh()
            self._show_quality(name)
            self.timings.append((f"select {name}", time.perf_counter() - t0))
        if self.messages.widget.value.find("loading the first face") >= 0:
            self.messages.clear()
        if self.session.remote and not getattr(self, "_ready", False):
            self._ready = True
            ready(self.session.backend)  # this viewer no longer counts as loading ahead of others

    def view(self, i: int):
        """The view of tab ``i``, built and attached on first use."""
        if i not in self.built:
            self.built[i] = self.factories[i]()
            self.slots[i].children = [self.built[i].widget]
        return self.built[i]

    @property
    def views(self) -> list:
        """All five views (builds the ones not opened yet)."""
        return [self.view(i) for i in range(len(self.factories))]

    def refresh(self) -> None:
        """Render the visible tab if it is stale."""
        i = self.tabs.selected_index or 0
        if self.current is None or i not in self.stale or self._quiet:
            return
        self.stale.discard(i)
        try:
            self.view(i).show(self.current, self.other)
        except Exception:
            self.stale.add(i)
            raise

    def add_model(self, spec: str) -> str:
        """Load a model (a .safetensors, .pth, .onnx path or "dlib") and offer it in the pickers."""
        if not spec.strip():
            raise ValueError(empty_message(self.session.any_model_path))
        self.messages.info(f"loading {spec.strip()} ...")
        key = self.session.load_other(spec)
        self.model.options = self._model_options()
        self.messages.info(f"{self.session.info(key)['name']}: {self.session.info(key)['description']}")
        self.stale = set(range(len(self.factories)))
        self.refresh()
        return key

    def _on_model(self, change) -> None:
        """Every tab now shows the picked model."""
        self.session.current = change["new"]
        if self._quiet:
            return
        self._show_model()
        self.stale = set(range(len(self.factories)))
        self.refresh()
        if self.current is not None:
            self._show_quality(self.current.name)

    def _benchmark(self):
        """The Benchmark tab's view."""
        from workbench.views.benchmark import BenchmarkPanel  # pandas, ipydatagrid: ~1 s

        return BenchmarkPanel(self.messages, self.settings.runs_dir, self.open_pair, session=self.session)

    def open_pair(self, face: Face, other: Face | None = None, model: str | None = None,
                  beside: str | None = None) -> None:
        """Open ``face`` with ``other`` in the Pair tab (the Face tab when ``other`` is None) under ``model`` (a
        spec of :meth:`Session.load_other`, loaded if new), with ``beside`` as the Pair tab's second model."""
        for spec in (model, beside):
            if spec and spec not in self.session.models:
                self.session.load_other(spec)
        with self._lock:
            self._quiet = True
            try:
                for f in (face, other):
                    if f is not None:
                        self.faces[f.name] = f
                self.model.options = self._model_options()
                self.second.options = list(self.faces)
                if other is not None:
                    self.second.value = other.name
                if model:
                    self.model.value = model
                self.tabs.selected_index = TAB_NAMES.index("Pair" if other is not None else "Face")
            finally:
                self._quiet = False
            self.other = other if other is not None else self.other
            self._show_model()
            self.select(face.name)
            if other is not None:
                pair = self.view(TAB_NAMES.index("Pair"))
                pair.beside.value = beside if beside in [v for _, v in pair.beside.options] else ""

    def _on_second(self, change) -> None:
        self.other = self.faces.get(change["new"])
        self.stale = set(range(len(self.factories)))
        self.refresh()

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files or is_placeholder(files[0]):  # the count set below echoes here: nothing to decode
            return
        item = files[0]
        name = f"upload: {Path(item['name']).name}"
        try:
            face = self.session.upload_face(bytes(item["content"]), Path(item["name"]).name)
            face.name = name
            self.session.analyse(face)  # decode + align + model now, so a bad file fails here
            self.faces[name] = face
            if name not in self.uploads:
                self.uploads.append(name)
        finally:  # frees the bytes (the next upload of the same file fires again); the button counts uploads
            self.upload.value = placeholders(self.uploads)
        self._thumbs.pop(name, None)  # a new photo under an earlier upload's name
        self._fill_gallery()
        self._second_options()
        self.select(name)

    def remove_upload(self, name: str) -> None:
        """Drop one of this viewer's uploads: its thumbnail, its place in the pickers, its pixels and,
        in the model side, the analyses of this viewer's uploads."""
        self.uploads.remove(name)
        self.faces.pop(name)
        self._thumbs.pop(name, None)
        self.upload.value = placeholders(self.uploads)
        self._fill_gallery()
        if self.other is not None and self.other.name == name:
            self.other = None
        shown = self.current is not None and self.current.name == name
        if shown:
            self.current = None  # the pickers' redraws below must not analyse it again
        self._second_options()
        if shown and self.faces:
            self.select(next(iter(self.faces)))
        self.session.forget_uploads()

    def _second_options(self) -> None:
        """The 2nd-face picker lists every face (gallery and this viewer's uploads), keeping its choice."""
        keep = self.second.value
        self.second.options = list(self.faces)
        self.second.value = keep if keep in self.faces else None
