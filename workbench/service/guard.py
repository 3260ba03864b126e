"""What the analysis service checks before any work: the token, the body, the fields, the model.

Every route but ``GET /health`` needs the shared secret (``Authorization: Bearer TOKEN``, compared
in constant time); a body is read in chunks up to :attr:`Limits.max_body` (413 beyond), must be a
JSON object whose fields have the documented types (422, one line), and a model named by a request
(``/model``'s ``spec``, any ``checkpoint``) must be on the allowlist: a registered name ("default",
"dlib", a plug-in's: ``recognizers.load.spec_names``), the served checkpoint, or a file inside
``--models DIR``. A missing file and a file outside the allowlist get
the same answer (:data:`NOT_SERVED`), so the service never tells what exists on its disk.

With ``any_path`` (``--any-model-path``: ``cqa workbench`` passes it only to a service behind a
dashboard that only its owner can reach, and the service accepts it only on a loopback address) a
request may also name any existing model file (or a folder holding one) the recognizer registry
has a loader for; a missing path or another kind of file is a one-line 422 that names it.

    guard = Guard(token, Models(settings.checkpoint, settings.models_dir), Limits())
    body = await guard.body(request, kind)          # raises Refused(status, one line)
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request

from cqa_core.data.imageio import MAX_PIXELS
from cqa_core.recognizers import registry
from cqa_core.recognizers.load import spec_names, specs
from workbench.wire import MAX_BODY, MAX_FACES

HEADER = "authorization"
"""The request header holding ``Bearer TOKEN``."""
NOT_SERVED = ("this workbench is shared: only its served model, 'dlib' and files in the folder given by "
              "--models DIR can be loaded")
"""The one answer for a model file that is missing or not allowed: it tells nothing of the disk."""
MAX_ANSWER = 48 * 2**20
"""Bytes of one answer the service sends (507 beyond): a pair's analysis of two 512 px photos with
every map is under 30 MB."""


class Refused(Exception):
    """A request refused before any work: ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Limits:
    """Per-request bounds of the service (flags of ``python -m workbench.service``)."""

    max_body: int = MAX_BODY  # bytes of one request body
    max_faces: int = MAX_FACES  # faces per /summaries call
    timeout_s: float = 240.0  # a handler's answer, queue wait included (under the client's 300 s)
    max_pixels: int = MAX_PIXELS  # pixels of one decoded face, checked from the image header
    max_answer: int = MAX_ANSWER  # bytes of one answer (an analysis of a 512 px photo is a few MB)


class Models:
    """The model allowlist: specs a request may name, each mapped to what the engine loads.

    ``any_path``: besides the allowlist, any existing model file (the owner's own workbench)."""

    def __init__(self, checkpoint: str | None = None, folder: Path | None = None, any_path: bool = False) -> None:
        self.served = str(Path(checkpoint).expanduser().resolve()) if checkpoint else None
        self.folder = Path(folder).expanduser().resolve() if folder else None
        self.any_path = any_path

    def check(self, spec: Any) -> str | None:
        """``spec`` (None: the session's model) as the engine's spec, or ``Refused(422, one line)``."""
        if spec is None:
            return None
        if not isinstance(spec, str):
            raise Refused(422, f"a model must be a string, got {type(spec).__name__}")
        text = spec.strip()
        if text in spec_names():
            return text
        path = Path(text).expanduser()
        if self.folder is not None and not path.is_absolute():
            path = self.folder / path
        resolved = path.resolve()
        inside = self.folder is not None and resolved.is_relative_to(self.folder)
        if (str(resolved) == self.served or inside) and resolved.is_file():
            return str(resolved)
        if self.any_path:
            return any_model_file(text)
        raise Refused(422, NOT_SERVED)


def any_model_file(text: str) -> str:
    """The resolved model file ``text`` names (relative: to the service's folder; a folder: the model
    file inside it), or ``Refused(422)`` in one line: empty, missing, or no loader for its kind."""
    if not text:
        raise Refused(422, f"type a model's path or name ({specs()})")
    path = Path(text).expanduser().resolve()
    if path.is_dir():
        path = next((path / f for f in registry.folder_files() if (path / f).is_file()), path)
    if not path.is_file():
        raise Refused(422, f"no model file at {text}")
    if registry.by_suffix(path.suffix) is None:
        raise Refused(422, f"{path.name}: not a model file the workbench can load (give {specs()})")
    return str(path)


# field -> (types it may have, required); checked before a job is queued
FACE, OPT_FACE, TEXT, OPT_TEXT = (dict,), (dict, type(None)), (str,), (str, type(None))
FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "info": {},
    "analyse": {"face": (FACE, True), "other": (OPT_FACE, False), "methods": ((list, type(None)), False),
                "checkpoint": (OPT_TEXT, False), "viewer": (OPT_TEXT, False)},
    "summaries": {"faces": ((list,), True), "checkpoint": (OPT_TEXT, False), "viewer": (OPT_TEXT, False)},
    "mask_effect": {"face": (FACE, True), "masked": ((dict,), True), "alpha": ((dict, type(None)), False),
                    "checkpoint": (OPT_TEXT, False), "viewer": (OPT_TEXT, False)},
    "model": {"spec": (TEXT, True)},
    "threshold": {"spec": (OPT_TEXT, False)},
    "viewers": {"event": (TEXT, False), "id": (TEXT, False)},
    "runs": {"name": (TEXT, True), "data": (TEXT, True), "protocol": (TEXT, True), "limit": ((int, type(None)), False),
             "spec": (OPT_TEXT, False)},
    "run_status": {"job": (TEXT, True)},
}


class Guard:
    """The checks of one service: its token (None: open, for in-process tests only), models, limits."""

    def __init__(self, token: str | None, models: Models | None = None, limits: Limits | None = None) -> None:
        self.token = token.encode() if token else None
        self.models = models or Models()
        self.limits = limits or Limits()

    def allow(self, request: Request) -> None:
        """Refused(401) unless the request carries the token."""
        if self.token is None:
            return
        scheme, _, given = request.headers.get(HEADER, "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
            raise Refused(401, "this analysis service needs its token (Authorization: Bearer ..., CQA_SERVICE_TOKEN)")

    async def body(self, request: Request, kind: str) -> dict[str, Any]:
        """The request's JSON object, read up to the size limit, fields checked (models mapped)."""
        cap = self.limits.max_body
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            raise Refused(413, f"request body over the {cap / 2**20:.3g} MB limit")
        chunks, size = [], 0
        async for chunk in request.stream():  # a body without (or lying in) its length: counted as it comes
            size += len(chunk)
            if size > cap:
                raise Refused(413, f"request body over the {cap / 2**20:.3g} MB limit")
            chunks.append(chunk)
        body = parse(b"".join(chunks))
        self.fields(kind, body)
        for key in ("checkpoint", "spec"):
            if key in body:
                body[key] = self.models.check(body[key])
        return body

    def fields(self, kind: str, body: dict[str, Any]) -> None:
        for name, (types, required) in FIELDS[kind].items():
            if name not in body:
                if required:
                    raise Refused(422, f"/{kind} needs the field {name!r}")
                continue
            if not isinstance(body[name], types):
                raise Refused(422, f"/{kind}: {name!r} must be {' or '.join(_name(t) for t in types)}, "
                                   f"got {_name(type(body[name]))}")
        if "id" in body and not isinstance(body["id"], str):
            raise Refused(422, f"/{kind}: 'id' must be a string")
        if kind == "summaries":
            faces = body["faces"]
            if len(faces) > self.limits.max_faces:
                raise Refused(422, f"/summaries takes at most {self.limits.max_faces} faces per call, got {len(faces)}")
            if not all(isinstance(f, dict) for f in faces):
                raise Refused(422, "/summaries: every face must be a JSON object")
        if kind == "analyse" and body.get("methods") and not all(isinstance(m, str) for m in body["methods"]):
            raise Refused(422, "/analyse: 'methods' must be a list of names")


def parse(data: bytes) -> dict[str, Any]:
    """A body's JSON object, or Refused(422) in one line (empty, malformed, not an object)."""
    if not data.strip():
        raise Refused(422, "empty request body: send a JSON object")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(422, f"malformed JSON: {str(exc).splitlines()[0][:120]}") from None
    if not isinstance(body, dict):
        raise Refused(422, f"the request body must be a JSON object, got {_name(type(body))}")
    return body


def _name(t: type) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", int: "a number",
            float: "a number", bool: "true/false"}.get(t, t.__name__)
