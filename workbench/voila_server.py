"""``python -m workbench.voila_server``: Voila, with its one unauthenticated websocket closed.

Voila's pages, kernel API and kernel websockets check the login (jupyter_server's identity
provider: the token or the password) and refuse without it. Its ``/voila/query/<kernel id>``
websocket (preheated kernels learn their page's request through it, query string included) is a
plain tornado handler that checks nothing. Here it is the same handler behind jupyter_server's
login check: without the token it answers 403 before the upgrade. Voila also mounts the login
form at ``/login`` whatever its ``base_url``, while the login check sends a browser to
``<base_url>login``; under a prefix (``--base-url /cqa/``) that page was the dashboard's own route,
behind the login: a redirect loop. Here the login and logout forms live under the prefix.

Voila's page, when the viewer leaves it, asks the server to shut its kernel down (a beacon to
``/voila/api/shutdown/<kernel id>`` carrying the ``_xsrf`` cookie's value), but no Voila route ever
sets that cookie, so jupyter_server refused the request (403, "'_xsrf' argument missing") and the
kernel, with the viewer's uploads, lived on until culled 15 minutes later. Here the dashboard page
sets the cookie, so leaving ends the kernel at once (and its session tells the service "bye").

Voila's pool of preheated kernels (``preheat_kernel``) refills a used kernel's place after
``fill_delay`` (60 s here), so that new kernels do not compete with the pages still loading; it
puts the refill's waiting task in the pool at once. A request that found only such tasks took
one and waited out its delay: a lab of 20 opening a pool of 10 left 10 pages blank for a minute.
Here the pool counts only kernels that are started or starting: a request arriving while the rest
still wait out their delay gets a kernel of its own at once (Voila's path without a pool).
Everything else is stock Voila (``voila.app.Voila``), configured by ``workbench.serve.voila_command``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import tornado.web
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from voila.app import Voila
from voila.request_info_handler import RequestInfoSocketHandler
from voila.tornado.handler import TornadoVoilaHandler


class LoggedInRequestInfo(RequestInfoSocketHandler, JupyterHandler):
    """Voila's request-info websocket, open only to a logged-in page (403 otherwise)."""

    def prepare(self) -> Any:  # jupyter_server's check; 403 rather than a redirect to the login page
        return JupyterHandler.prepare(self, _redirect_to_login=False)


class DashboardPage(TornadoVoilaHandler):
    """Voila's notebook page, which also sets the ``_xsrf`` cookie its leave-beacon sends back."""

    @tornado.web.authenticated
    async def get(self, path: str | None = None) -> None:
        self.xsrf_token  # noqa: B018 - reading it sets the cookie (tornado)
        await super().get(path)


class ReadyPool:
    """Mixed into Voila's pooled kernel manager: the pool's size counts only kernels past their delay.

    Voila's handler takes a pooled kernel when ``get_pool_size`` is above zero, and the manager then
    hands out the pool's first task, awaiting it. Refill tasks go in at the back with the time their
    delay ends (the first fill has none: it starts at once), so the first task is never later than
    any other and counting the tasks whose delay is over is enough.
    """

    _pools: dict[str, list[asyncio.Task]]
    fill_delay: float

    def fill_if_needed(self, delay: float | None = None, notebook_name: str | None = None, **kwargs: Any) -> None:
        before = set(map(id, self._pools.get(notebook_name, ())))
        super().fill_if_needed(delay, notebook_name, **kwargs)  # type: ignore[misc]
        starts = asyncio.get_event_loop().time() + (self.fill_delay if delay is None else delay)
        for task in self._pools[notebook_name]:
            if id(task) not in before:
                task.cqa_starts_at = starts  # type: ignore[attr-defined]

    def get_pool_size(self, notebook_name: str) -> int:
        now = asyncio.get_event_loop().time()
        return sum(getattr(task, "cqa_starts_at", 0.0) <= now for task in self._pools.get(notebook_name, ()))


class WorkbenchVoila(Voila):
    """Voila whose every non-static route needs the login, whose page ends its kernel on leaving,
    and whose pool never parks a request."""

    def init_settings(self) -> dict:
        settings = super().init_settings()
        manager = self.kernel_manager
        if hasattr(manager, "_pools"):  # preheat_kernel: Voila built its pooled manager class
            manager.__class__ = type("WorkbenchKernelManager", (ReadyPool, type(manager)), {})
        return settings

    def init_handlers(self) -> list:
        forms = {pattern for pattern, *_ in self.identity_provider.get_handlers()}  # "/login", "/logout"
        routes = []
        for route in super().init_handlers():
            if route[1] is RequestInfoSocketHandler:
                route = (route[0], LoggedInRequestInfo, *route[2:])
            elif route[1] is TornadoVoilaHandler:
                route = (route[0], DashboardPage, *route[2:])
            elif route[0] in forms:
                route = (url_path_join(self.server_url, route[0]), *route[1:])
            routes.append(route)
        return routes


main = WorkbenchVoila.launch_instance

if __name__ == "__main__":
    main()
