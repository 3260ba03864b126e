"""``python -m workbench.service``: flags + environment -> Settings -> engine, queue, app, uvicorn.

``cqa workbench`` starts this next to Voila (``workbench.serve``); it can also run alone on a GPU
box, with the dashboard elsewhere (``cqa workbench --service URL``). Every route but ``/health``
needs the token ``CQA_SERVICE_TOKEN`` (``Authorization: Bearer``); without one, a token is made
for this run and printed once, for the dashboard's ``CQA_SERVICE_TOKEN``. ``--any-model-path``
(accepted only with a loopback ``--host``) lets a request load any model file on this machine: a
loopback ``cqa workbench`` behind its owner's login passes it (``workbench.access.Access.owner_only``).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import threading

import uvicorn

from cqa_core.commands.common import add_model_argument
from cqa_core.settings import AlignMode, Settings
from workbench.gallery import gallery_faces
from workbench.hosts import is_loopback
from workbench.service.app import AnalysisService, create_app
from workbench.service.engine import Engine
from workbench.service.guard import Guard, Limits, Models

log = logging.getLogger("cqa.service")


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    ap = argparse.ArgumentParser(prog="python -m workbench.service",
                                 description="The analysis service: one model process for every dashboard viewer.")
    ap.add_argument("--port", type=int, default=8867)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    add_model_argument(ap, "the CQA-Face served: a .safetensors checkpoint or run folder (default: env "
                       "CQA_CHECKPOINT, else the bundled model)")
    ap.add_argument("--faces", default=None, help="gallery folder to warm the cache with (env CQA_FACES)")
    ap.add_argument("--people", type=int, default=None, help="gallery size (env CQA_GALLERY_PEOPLE, default 60)")
    ap.add_argument("--align", choices=[m.value for m in AlignMode], default=None,
                    help="gallery alignment (env CQA_ALIGN, default mtcnn)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: min(2, cores))")
    ap.add_argument("--no-warm", dest="warm", action="store_false", help="do not analyse the gallery at start-up")
    ap.add_argument("--models", default=None, help="folder of model files requests may name besides the served "
                    "model and dlib (env CQA_MODELS; default: none)")
    ap.add_argument("--any-model-path", action="store_true", help="requests may load any model file on this "
                    "machine, not only the allowlist (accepted only on a loopback --host; cqa workbench passes it when "
                    "only its owner can open the dashboard)")
    ap.add_argument("--timeout", type=float, default=Limits.timeout_s,
                    help=f"seconds a request may wait for its answer, queue included (default {Limits.timeout_s:g}): 503 after")
    ap.add_argument("--max-body-mb", type=float, default=Limits.max_body / 2**20,
                    help=f"largest request body in MB (default {Limits.max_body / 2**20:g}): 413 beyond")
    ap.add_argument("--max-faces", type=int, default=Limits.max_faces,
                    help=f"faces per /summaries call (default {Limits.max_faces})")
    args = ap.parse_args(argv)
    settings = Settings.from_env(checkpoint=args.model, faces=args.faces, people=args.people, align=args.align,
                                 torch_threads=args.threads or min(2, os.cpu_count() or 1), models_dir=args.models)
    if settings.models_dir is not None and not settings.models_dir.is_dir():
        ap.error(f"--models {settings.models_dir}: no such folder")
    if args.any_model_path and not is_loopback(args.host):
        ap.error(f"--any-model-path is accepted only on a loopback --host (127.0.0.1, ::1, localhost), not {args.host}")
    return args, settings


def guard_of(args: argparse.Namespace, settings: Settings) -> Guard:
    """The token (CQA_SERVICE_TOKEN, else one made now and printed once), model allowlist and limits."""
    token = settings.service_token
    if not token:
        token = secrets.token_urlsafe(32)
        print(f"CQA-Face analysis service: no CQA_SERVICE_TOKEN set; this run's token is {token} "
              "(give it to the dashboard as CQA_SERVICE_TOKEN)", file=sys.stderr, flush=True)
    limits = Limits(max_body=int(args.max_body_mb * 2**20), max_faces=args.max_faces, timeout_s=args.timeout)
    return Guard(token, Models(settings.checkpoint, settings.models_dir, any_path=args.any_model_path), limits)


def main(argv: list[str] | None = None) -> int:
    args, settings = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s service %(levelname)s %(message)s")
    guard = guard_of(args, settings)
    service = AnalysisService(Engine(settings, maxsize=256), max_pixels=guard.limits.max_pixels)
    log.info("model: %s (%s)", service.engine.label, service.engine.info()["description"])
    log.info("models a viewer may add: %s", "any model file on this machine" if args.any_model_path else
             "the served model, dlib and files in --models")
    faces = gallery_faces(settings) if args.warm else []
    if faces:
        log.info("warm-up: aligning and analysing %d gallery faces (MTCNN runs once per photo, "
                 "then its landmarks are kept on disk)", len(faces))
        threading.Thread(target=service.warm, args=(faces,), daemon=True).start()
    uvicorn.run(create_app(service, guard), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
