"""``python -m workbench.voila_server``: Voila, with its one unauthenticated websocket closed.

Voila's pages, kernel API and kernel websockets check the login (jupyter_server's identity
provider: the token or the password) and refuse without it. Its ``/voila/query/<kernel id>``
websocket (preheated kernels learn their page's request through it, query string included) is a
plain tornado handler that checks nothing. Here it is the same handler behind jupyter_server's
login check: without the token it answers 403 before the upgrade. Voila also mounts the login
form at ``/login`` whatever its ``base_url``, while the login check sends a browser to
``<base_url>login``; under a prefix (``--base-url /cqa/``) that page was the dashboard's own route,
behind the login: a redirect loop. Here the login and logout forms live under the prefix.
Everything else is stock Voila (``voila.app.Voila``), configured by ``workbench.serve.voila_command``.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from voila.app import Voila
from voila.request_info_handler import RequestInfoSocketHandler


class LoggedInRequestInfo(RequestInfoSocketHandler, JupyterHandler):
    """Voila's request-info websocket, open only to a logged-in page (403 otherwise)."""

    def prepare(self) -> Any:  # jupyter_server's check; 403 rather than a redirect to the login page
        return JupyterHandler.prepare(self, _redirect_to_login=False)


class WorkbenchVoila(Voila):
    """Voila whose every non-static route needs the login."""

    def init_handlers(self) -> list:
        forms = {pattern for pattern, *_ in self.identity_provider.get_handlers()}  # "/login", "/logout"
        routes = []
        for route in super().init_handlers():
            if route[1] is RequestInfoSocketHandler:
                route = (route[0], LoggedInRequestInfo, *route[2:])
            elif route[0] in forms:
                route = (url_path_join(self.server_url, route[0]), *route[1:])
            routes.append(route)
        return routes


main = WorkbenchVoila.launch_instance

if __name__ == "__main__":
    main()
