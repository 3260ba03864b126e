"""``python -m workbench.service``: flags + environment -> Settings -> engine, queue, app, uvicorn.

``cqa workbench`` starts this next to Voila (``workbench.serve``); it can also run alone on a GPU
box, with the dashboard elsewhere (``cqa workbench --service URL``).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading

import uvicorn

from cqa_core.settings import AlignMode, Settings
from workbench.gallery import gallery_faces
from workbench.service.app import AnalysisService, create_app
from workbench.service.engine import Engine

log = logging.getLogger("cqa.service")


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    ap = argparse.ArgumentParser(prog="python -m workbench.service",
                                 description="The analysis service: one model process for every dashboard viewer.")
    ap.add_argument("--port", type=int, default=8867)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ap.add_argument("--checkpoint", default=None, help="model weights (default: env CQA_CHECKPOINT, else the default)")
    ap.add_argument("--faces", default=None, help="gallery folder to warm the cache with (env CQA_FACES)")
    ap.add_argument("--people", type=int, default=None, help="gallery size (env CQA_GALLERY_PEOPLE, default 60)")
    ap.add_argument("--align", choices=[m.value for m in AlignMode], default=None,
                    help="gallery alignment (env CQA_ALIGN, default mtcnn)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: min(2, cores))")
    ap.add_argument("--no-warm", dest="warm", action="store_false", help="do not analyse the gallery at start-up")
    args = ap.parse_args(argv)
    settings = Settings.from_env(checkpoint=args.checkpoint, faces=args.faces, people=args.people, align=args.align,
                                 torch_threads=args.threads or min(2, os.cpu_count() or 1))
    return args, settings


def main(argv: list[str] | None = None) -> int:
    args, settings = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s service %(levelname)s %(message)s")
    service = AnalysisService(Engine(settings, maxsize=256))
    log.info("model: %s (%s)", service.engine.label, service.engine.info()["description"])
    faces = gallery_faces(settings) if args.warm else []
    if faces:
        log.info("warm-up: aligning and analysing %d gallery faces (MTCNN runs once per photo, "
                 "then its landmarks are kept on disk)", len(faces))
        threading.Thread(target=service.warm, args=(faces,), daemon=True).start()
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
