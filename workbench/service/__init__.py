"""The analysis service: one model process behind every dashboard viewer.

    python -m workbench.service --port 8867 [--checkpoint M] [--faces DIR]

* ``wire``     the one wire format: face references, ``FaceSummary``, the ``.npz`` codec of analyses
* ``engine``   the model host (``Engine``): models, aligner and analysis cache; in-process or served
* ``queue``    jobs, the FIFO queue, batching of single-face requests, one worker thread
* ``app``      the Starlette routes over an engine and its queue
* ``client``   ``ServiceClient``: the same methods as ``Engine``, over HTTP (no torch)
* ``__main__`` flags + environment -> ``Settings`` -> engine, queue, app, uvicorn

A viewer's ``Session`` talks to an ``Engine`` or a ``ServiceClient`` through one ``Backend``
protocol (``workbench.session``).
"""
