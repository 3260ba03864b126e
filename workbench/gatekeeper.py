"""What Voila's server checks besides the login: failed logins, kernels per client, paths, logs.

``workbench.voila_server`` mixes these into stock Voila:

* :class:`LimitedLogins` (into the identity provider): a client address that sent
  :data:`MAX_FAILED_LOGINS` wrong tokens or passwords within :data:`LOGIN_WINDOW_S` gets 429 and
  one line for every login attempt until the window has passed, the right token included (100
  wrong tokens took 0.11 s without it). Tokens are compared in constant time.
* :class:`KernelsPerClient` (into the kernel manager) and :func:`claim_kernel`: a client address
  holds at most ``kernels_per_client`` dashboard kernels (its open pages); one more page answers
  429 and one line instead of starting another kernel.
* :func:`log_request`: jupyter_server's access log line, which writes ``?token=[secret]`` (tornado's
  own, which Voila used, wrote every failed request's full URL, token included); :func:`scrub_logs`
  does the same to every other line (tornado's warning about a refused request quotes its URL).
* :func:`safe_template_path`: a template asset path that is not ``<template>/static/<file>``
  inside its folder is 404, before Voila's handler splits it (``..%2f..`` was a 500).

Behind the shipped proxy (nginx on this machine, Voila on loopback) the client address is the
proxy's ``X-Real-IP`` (``workbench.voila_server`` trusts those headers only on loopback).
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jupyter_server.log import log_request as jupyter_log_request
from tornado.web import HTTPError, RequestHandler

MAX_FAILED_LOGINS = 10
"""Wrong tokens or passwords one client address may send within :data:`LOGIN_WINDOW_S`."""
LOGIN_WINDOW_S = 60.0
"""Seconds over which failed logins are counted (and the wait once over the limit)."""
SECRET_PARAM = re.compile(r"([?&;](?:token|_xsrf|password)=)[^&\s\"'#]+", re.IGNORECASE)
"""A token, xsrf value or password in a URL's query, as a log line may quote it."""
TOO_MANY_LOGINS = "too many failed logins from this address: wait a minute, then use the token you were given"


class LimitedLogins:
    """Mixed into the identity provider: failed logins per client address are limited."""

    token: str
    log: Any

    def _failures(self, handler: RequestHandler) -> deque[float]:
        table: dict[str, deque[float]] = self.__dict__.setdefault("_cqa_failures", {})
        seen = table.setdefault(handler.request.remote_ip or "", deque())
        while seen and time.monotonic() - seen[0] > LOGIN_WINDOW_S:
            seen.popleft()
        if len(table) > 10_000:  # a flood of addresses: forget the quiet ones
            for ip in [ip for ip, d in table.items() if not d]:
                del table[ip]
        return seen

    def _attempt(self, handler: RequestHandler) -> deque[float]:
        seen = self._failures(handler)
        if len(seen) >= MAX_FAILED_LOGINS:
            raise HTTPError(429, TOO_MANY_LOGINS, reason=TOO_MANY_LOGINS)  # the reason: what error pages show
        return seen

    def _failed(self, handler: RequestHandler, seen: deque[float]) -> None:
        seen.append(time.monotonic())
        if len(seen) == MAX_FAILED_LOGINS:
            self.log.warning("login: %d failed attempts from %s; refusing its logins for %.0f s",
                             len(seen), handler.request.remote_ip, LOGIN_WINDOW_S)

    async def get_user_token(self, handler: RequestHandler) -> Any:
        given = self.get_token(handler)  # type: ignore[attr-defined]
        if not given or not self.token:
            return None
        seen = self._attempt(handler)
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            self._failed(handler, seen)
            return None
        user = self.get_user_cookie(handler)  # type: ignore[attr-defined]
        if hasattr(user, "__await__"):
            user = await user
        return user or self.generate_anonymous_user(handler)  # type: ignore[attr-defined]

    def process_login_form(self, handler: RequestHandler) -> Any:
        seen = self._attempt(handler)
        user = super().process_login_form(handler)  # type: ignore[misc]
        if user is None:
            self._failed(handler, seen)
        return user


class KernelsPerClient:
    """Mixed into Voila's kernel manager: which client address each dashboard kernel was started for."""

    def kernels_of(self, client: str) -> int:
        """Live kernels started (or being started) for ``client``."""
        owners: dict[str, str] = self.__dict__.setdefault("_cqa_owners", {})
        live = set(self.list_kernel_ids())  # type: ignore[attr-defined]
        for kid in [k for k in owners if k not in live]:
            del owners[kid]
        pending: dict[str, int] = self.__dict__.setdefault("_cqa_pending", {})
        return sum(owner == client for owner in owners.values()) + pending.get(client, 0)

    def own(self, kernel_id: str, client: str) -> None:
        self.__dict__.setdefault("_cqa_owners", {})[kernel_id] = client


@contextmanager
def claim_kernel(manager: Any, client: str, cap: int) -> Iterator[None]:
    """Within the block, ``client`` is starting one more kernel; 429 when it holds ``cap`` already.

    The kernel's id is learnt when the page's kernel starts (:meth:`VoilaPage.kernel_started`)."""
    if not isinstance(manager, KernelsPerClient):
        yield
        return
    if manager.kernels_of(client) >= cap:
        line = (f"this address already has {cap} dashboard{'s' if cap != 1 else ''} open: close one, "
                "or wait until an idle one ends (15 minutes)")
        raise HTTPError(429, line, reason=line)
    pending: dict[str, int] = manager.__dict__.setdefault("_cqa_pending", {})
    pending[client] = pending.get(client, 0) + 1
    try:
        yield
    finally:
        pending[client] -= 1
        if not pending[client]:
            del pending[client]


class ScrubTokens(logging.Filter):
    """A log filter that writes ``token=[secret]`` for every token in a record's message (tornado's
    warnings about a refused request quote its whole URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        scrubbed = SECRET_PARAM.sub(r"\1[secret]", text)
        if scrubbed != text:
            record.msg, record.args = scrubbed, ()
        return True


def scrub_logs(*loggers: logging.Logger) -> None:
    """Add :class:`ScrubTokens` to ``loggers``, tornado's, and every handler of theirs and of the root
    logger (a logger's filter sees only the records made on it; a handler's, those passing through)."""
    names = ("tornado.access", "tornado.application", "tornado.general")
    chosen = (*loggers, *map(logging.getLogger, names))
    handlers = [h for lg in (*chosen, logging.getLogger()) for h in lg.handlers]
    for where in (*chosen, *handlers, logging.lastResort):
        if where is not None and not any(isinstance(f, ScrubTokens) for f in where.filters):
            where.addFilter(ScrubTokens())


def log_request(handler: RequestHandler) -> None:
    """jupyter_server's access log line: tokens scrubbed from the URL and the referrer."""
    jupyter_log_request(handler, record_prometheus_metrics=False)


def safe_template_path(path: str) -> bool:
    """True for ``<template>/static/<file>`` with no empty, ``.`` or ``..`` part (after unquoting)."""
    parts = path.replace("\\", "/").split("/")
    return len(parts) >= 3 and parts[1] == "static" and all(p not in ("", ".", "..") for p in parts)
