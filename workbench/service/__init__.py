"""The analysis service: one model process behind every dashboard viewer.

    python -m workbench.service --port 8867 [--model M] [--faces DIR]

* ``engine``   the model host (``Engine``): routing of analyses, thread setup; in-process or served
* ``models``   the recognizers it has loaded (an LRU by spec)
* ``uploads``  each viewer's own analysis cache for its uploads (in memory, dropped when it leaves)
* ``queue``    jobs, the FIFO queue, batching of single-face requests, one worker thread
* ``guard``    the token, body, field and model checks before any work
* ``runjobs``  benchmark runs started from the dashboard, in child processes
* ``app``      the Starlette routes over an engine and its queue (every photo shrunk by ``workbench.photo``)
* ``__main__`` flags + environment -> ``Settings`` -> engine, queue, app, uvicorn

The workbench is three layers, each an import-linter contract (pyproject.toml): the launcher
(``command``, ``serve``, ``access``, ``voila_server``, ``gatekeeper``, ``start``) over the viewer side
(``app``, ``loading``, ``session``, ``client``, ``views``: widgets, no torch) and this service, with
the records both sides share (``workbench.wire``: ``Face``, ``FaceSummary``, the codec;
``workbench.gallery``; ``workbench.photo``: the one photo size) below all three. A viewer's ``Session`` talks to an ``Engine`` or a
``ServiceClient`` (``workbench.client``: the same methods over HTTP) through one ``Backend`` protocol.
"""
