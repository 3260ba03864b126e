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
Besides the login (``workbench.gatekeeper``): failed logins are limited per client address, a client
address holds a bounded number of dashboard kernels, template asset paths outside their folder are
404, tokens are scrubbed from the access log, ``/logout`` renders (it needed a ``static_path``), and,
without a login on loopback, only loopback ``Host`` names are answered (a DNS-rebinding page cannot
drive the dashboard). On loopback (the shipped proxy's case) Voila trusts ``X-Forwarded-Proto`` and
``X-Real-IP``, so the login cookie is ``Secure`` behind TLS; the cookie lasts ``login_days``.
The dashboard notebook is trusted: Voila checks each notebook it loads (every preheated kernel
loads it) against the user's notebook-signature store and, finding it unsigned, logged "Notebook
dashboard.ipynb is not trusted" once per kernel (creating a signing key and a store in the user's
Jupyter data folder on the way). Here the notebook is signed at start with a random key into a store
kept in memory, which trusts that notebook, as shipped, and nothing else, and writes no file.
Everything else is stock Voila (``voila.app.Voila``), configured by ``workbench.serve.voila_command``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import re
import secrets
from pathlib import Path
from typing import Any

import nbformat
import plotly
import tornado.web
from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider
from jupyter_server.auth.logout import LogoutHandler
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from nbformat.sign import MemorySignatureStore, NotebookNotary
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError
from traitlets import Bool, Float, Int, Type, Unicode, default
from voila.app import Voila
from voila.request_info_handler import RequestInfoSocketHandler
from voila.static_file_handler import TemplateStaticFileHandler
from voila.tornado.handler import TornadoVoilaHandler
from voila.utils import ENV_VARIABLE
from voila.voila_identity_provider import VoilaLoginHandler

from workbench.access import KERNELS_PER_CLIENT, is_loopback
from workbench.gatekeeper import (
    KernelsPerClient,
    LimitedLogins,
    claim_kernel,
    log_request,
    safe_template_path,
    scrub_logs,
)
from workbench.views.figures import BUNDLE_ENV

KERNEL_INFO_TIMEOUT_S = 30.0
"""How long a pooled kernel may take to answer ``kernel_info`` before it is replaced."""
CLIENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("cqa_client", default=None)
"""The client address whose page request is being served (its kernel is counted for it)."""


class LoggedInRequestInfo(RequestInfoSocketHandler, JupyterHandler):
    """Voila's request-info websocket, open only to a logged-in page (403 otherwise)."""

    def prepare(self) -> Any:  # jupyter_server's check; 403 rather than a redirect to the login page
        return JupyterHandler.prepare(self, _redirect_to_login=False)


class DashboardPage(TornadoVoilaHandler):
    """Voila's notebook page, which also sets the ``_xsrf`` cookie its leave-beacon sends back."""

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        """Behind TLS (the proxy's ``X-Forwarded-Proto``, trusted on loopback) the ``_xsrf`` cookie is
        ``Secure`` like the login cookie."""
        if name == "_xsrf" and self.request.protocol == "https":
            kwargs["secure"] = True
        super().set_cookie(name, value, *args, **kwargs)

    @tornado.web.authenticated
    async def get(self, path: str | None = None) -> None:
        self.xsrf_token  # noqa: B018 - reading it sets the cookie (tornado)
        client = self.request.remote_ip or ""
        with claim_kernel(self.kernel_manager, client, self.settings.get("cqa_kernels_per_client", KERNELS_PER_CLIENT)):
            token = CLIENT.set(client)
            try:
                await super().get(path)
            finally:
                CLIENT.reset(token)


class OwnedKernels(KernelsPerClient):
    """Mixed into Voila's kernel manager: a page's kernel (started or taken from the pool) is its client's."""

    async def start_kernel(self, *args: Any, **kwargs: Any) -> str:
        kernel_id = await super().start_kernel(*args, **kwargs)  # type: ignore[misc]
        client = CLIENT.get()
        if client is not None and (kwargs.get("env") or {}).get(ENV_VARIABLE.VOILA_PREHEAT) == "False":
            self.own(kernel_id, client)  # a page's own kernel (the pool's refills say "True")
        return kernel_id

    async def get_rendered_notebook(self, *args: Any, **kwargs: Any) -> Any:
        found = await super().get_rendered_notebook(*args, **kwargs)  # type: ignore[misc]
        client = CLIENT.get()
        if client is not None:
            self.own(found[2], client)  # (render task, rendered cells, kernel id)
        return found


class TemplateAssets(TemplateStaticFileHandler):
    """Voila's template assets; a path outside ``<template>/static/`` is 404 (``..%2f..`` was a 500)."""

    async def get(self, path: str, include_body: bool = True) -> None:
        if not safe_template_path(path):
            raise tornado.web.HTTPError(404)
        await super().get(path, include_body)


class Logout(LogoutHandler):
    """jupyter_server's logout page, with the static URLs of Voila's login page (it answered 500)."""

    static_url = VoilaLoginHandler.static_url


class WorkbenchIdentity(LimitedLogins, PasswordIdentityProvider):
    """The token or password login, with failed attempts limited per client address."""

    @default("logout_handler_class")
    def _logout_default(self) -> type:
        return Logout


class ReadyPool:
    """Mixed into Voila's pooled kernel manager: the pool's size counts only kernels past their delay.

    Voila's handler takes a pooled kernel when ``get_pool_size`` is above zero, and the manager then
    hands out the pool's first task, awaiting it. Refill tasks go in at the back with the time their
    delay ends (the first fill has none: it starts at once), so the first task is never later than
    any other and counting the tasks whose delay is over is enough.
    """

    _pools: dict[str, list[asyncio.Task]]
    log: Any
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

    async def get_rendered_notebook(self, notebook_name: str, *args: Any, **kwargs: Any) -> Any:
        """Voila's hand-out of the pool's first kernel, once that kernel is known to answer.

        A pooled kernel that failed to start, died, was restarted (a new process holds none of the
        dashboard's widgets) or whose dashboard run failed (a kernel killed before it answered
        ``kernel_info`` leaves a page without its dashboard) is shut down and replaced at the front
        of the pool by one starting now, which is then checked the same way.
        """
        pool = self._pools.get(notebook_name, [])
        for _ in range(1 + len(pool)):  # each bad kernel is replaced once: bounded
            if not pool:
                break
            if await self._answers(pool[0]):
                break
            pool.pop(0)
            before = set(map(id, pool))
            self.fill_if_needed(delay=0, notebook_name=notebook_name)  # type: ignore[attr-defined]
            fresh = [t for t in pool if id(t) not in before]
            for task in fresh:  # to the front: the next to be handed out
                pool.remove(task)
            pool[:0] = fresh
        return await super().get_rendered_notebook(notebook_name, *args, **kwargs)  # type: ignore[misc]

    def _handle_kernel_restarted(self, kernel_id: str) -> None:
        """jupyter_server's note of an automatic restart (a killed kernel): that kernel lost its dashboard."""
        self.__dict__.setdefault("_cqa_restarted", set()).add(kernel_id)
        super()._handle_kernel_restarted(kernel_id)  # type: ignore[misc]

    async def _answers(self, task: asyncio.Task) -> bool:
        """True when the pooled kernel started, answered ``kernel_info`` (its dashboard run got past
        that) within :data:`KERNEL_INFO_TIMEOUT_S`, was never restarted, runs, and its run has not
        failed; a bad one is shut down."""
        try:
            content = await task
        except Exception:  # noqa: BLE001 - a kernel that failed to start is no kernel to hand out
            return False
        kernel_id, render, renderer = content["kernel_id"], content["task"], content["renderer"]
        loop = asyncio.get_event_loop()
        deadline = loop.time() + KERNEL_INFO_TIMEOUT_S

        def answered() -> bool:  # Voila's renderer keeps its client once the kernel replied to kernel_info
            return getattr(getattr(renderer, "executor", None), "kc", None) is not None

        while not answered() and not render.done() and loop.time() < deadline:
            await asyncio.sleep(0.1)
        failed = render.done() and not render.cancelled() and render.exception() is not None
        ok = (answered() or (render.done() and not failed)) and not failed
        ok = ok and kernel_id not in self.__dict__.get("_cqa_restarted", ())
        try:
            ok = ok and await self.get_kernel(kernel_id).is_alive()  # type: ignore[attr-defined]
        except KeyError:  # already removed
            ok = False
        if not ok:
            self.log.warning("pool: kernel %s did not answer (or was restarted); starting another", kernel_id)
            try:
                await self.shutdown_kernel(kernel_id, now=True)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - already gone
                pass
        return ok


def trusting_notary(notebook: str) -> NotebookNotary:
    """A notary that trusts ``notebook`` (its content as it is now) and nothing else: a random key, kept in memory.

    Args:
        notebook: Path of the notebook to trust (the dashboard Voila serves).

    Returns:
        The notary for Voila's contents manager: the notebook, read as Voila reads it, is signed in it.
    """
    notary = NotebookNotary(store_factory=MemorySignatureStore, secret=secrets.token_bytes(32))
    notary.sign(nbformat.read(notebook, as_version=4))
    return notary


PLOTLY_BUNDLE = Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"
"""plotly's FigureWidget front end, served under :data:`BUNDLE_DIR` so that a figure need not carry it."""
BUNDLE_DIR = "/voila/cqa-static/"


def quiet_closed_sockets(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's handler, minus a kernel message that found its viewer's page closed: leaving the page is
    no error, and the default handler printed a traceback for each message still on its way."""
    if isinstance(context.get("exception"), (WebSocketClosedError, StreamClosedError)):
        return
    loop.default_exception_handler(context)


class WorkbenchVoila(Voila):
    """Voila whose every non-static route needs the login, whose page ends its kernel on leaving,
    and whose pool never parks a request."""

    identity_provider_class = Type(default_value=WorkbenchIdentity, klass=IdentityProvider, config=True,
                                   help="The identity provider: the token or password, failed attempts limited.")
    local_hosts = Unicode("", config=True, help="Comma-separated Host names answered besides loopback addresses; "
                          "set (a login-free loopback server): every other Host header gets 403.")
    login_days = Float(7.0, config=True, help="Days a login cookie lasts.")
    kernels_per_client = Int(KERNELS_PER_CLIENT, config=True, help="Dashboard kernels one client address may hold.")
    plotly_bundle = Bool(True, config=True, help="Serve plotly's widget bundle once for every figure of a page "
                         "(False: each figure carries its own copy, as plotly ships it).")

    def init_settings(self) -> dict:
        # the kernels (the pool's start in super().init_settings(), inheriting this environment) make
        # figures that import plotly's bundle from here; a new plotly is a new URL, so it may be cached for good
        bundle = url_path_join(self.base_url, BUNDLE_DIR, PLOTLY_BUNDLE.name) + f"?v={plotly.__version__}"
        os.environ[BUNDLE_ENV] = bundle if self.plotly_bundle else ""
        settings = super().init_settings()
        manager = self.kernel_manager
        mixins = (OwnedKernels, ReadyPool) if hasattr(manager, "_pools") else (OwnedKernels,)  # _pools: preheat
        manager.__class__ = type("WorkbenchKernelManager", (*mixins, type(manager)), {})
        identity = self.identity_provider
        identity.cookie_options = {**identity.cookie_options, "expires_days": self.login_days}
        identity.get_secure_cookie_kwargs = {**identity.get_secure_cookie_kwargs, "max_age_days": self.login_days}
        settings.update(log_function=log_request, cqa_kernels_per_client=self.kernels_per_client)
        if self.notebook_path:  # the dashboard: trusted, so no "not trusted" line per kernel that loads it
            self.contents_manager.notary = trusting_notary(self.notebook_path)
        scrub_logs(self.log)
        if self.local_hosts:  # jupyter_server's Host check (JupyterHandler.check_host), which Voila turns off
            settings.update(allow_remote_access=False,
                            local_hostnames=[h.strip() for h in self.local_hosts.split(",") if h.strip()])
        return settings

    def listen(self) -> None:
        if is_loopback(self.ip):  # only a local proxy reaches it: its X-Forwarded-Proto / X-Real-IP hold
            self.app.listen = functools.partial(self.app.listen, xheaders=True)  # type: ignore[method-assign]
        asyncio.get_event_loop().set_exception_handler(quiet_closed_sockets)  # the loop start() runs
        super().listen()

    def init_handlers(self) -> list:
        forms = {pattern for pattern, *_ in self.identity_provider.get_handlers()}  # "/login", "/logout"
        bundle = url_path_join(self.server_url, BUNDLE_DIR, f"({re.escape(PLOTLY_BUNDLE.name)})")
        routes: list = [(bundle, tornado.web.StaticFileHandler,
                         {"path": str(PLOTLY_BUNDLE.parent)})]  # a public library file, like Voila's own static
        for route in super().init_handlers():
            if route[1] is RequestInfoSocketHandler:
                route = (route[0], LoggedInRequestInfo, *route[2:])
            elif route[1] is TornadoVoilaHandler:
                route = (route[0], DashboardPage, *route[2:])
            elif route[1] is TemplateStaticFileHandler:
                route = (route[0], TemplateAssets, *route[2:])
            elif route[0] in forms:
                route = (url_path_join(self.server_url, route[0]), *route[1:])
            routes.append(route)
        return routes


main = WorkbenchVoila.launch_instance

if __name__ == "__main__":
    main()
