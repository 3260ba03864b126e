"""Where a dashboard or a notebook starts: the settings read once, the backend chosen, the views built.

    from workbench.start import notebook_settings, open_session, open_workbench
    settings = notebook_settings(people=8)     # the one place a notebook reads CQA_* variables
    session = open_session(settings)           # the service's client, or the model in this process
    open_workbench(settings).widget            # the whole dashboard (dashboard.ipynb's last cell)

This module belongs to the launcher, above both the viewer side (``workbench.session``,
``workbench.app``, the views: widgets, no torch) and the service (``workbench.service``: the model):
it is the one place that picks between them. With ``Settings.service_url`` set (``cqa workbench``
sets it for every dashboard kernel) a session is a thin HTTP client and this process never loads
torch; without it (JupyterLab, notebooks, tests) an ``Engine`` runs the model here.
"""

from __future__ import annotations

from typing import Any

from cqa_core.settings import Settings
from workbench.app import Workbench
from workbench.client import ServiceClient
from workbench.session import Backend, Session


def notebook_settings(**flags: Any) -> Settings:
    """A notebook's settings: ``Settings.from_env`` (CQA_* variables) with the notebook's own flags."""
    return Settings.from_env(**flags)


def backend_for(settings: Settings) -> Backend:
    """The service's client when ``settings.service_url`` is set, else an in-process engine."""
    if settings.service_url:
        return ServiceClient(settings.service_url, settings.service_token)
    from workbench.service.engine import Engine  # torch: only an in-process session loads it

    return Engine(settings)


def open_session(settings: Settings) -> Session:
    """A viewer's session over the backend the settings name (:func:`backend_for`)."""
    return Session(settings, backend_for(settings))


def open_workbench(settings: Settings) -> Workbench:
    """The dashboard over a new session (:func:`open_session`)."""
    return Workbench(session=open_session(settings))


def load_session_model(settings: Settings) -> tuple[Any, str, bool]:
    """(model, label, untrained) of the settings, for notebooks that compute with the model itself."""
    from cqa_core.checkpoint import (
        resolve_model,  # torch: notebooks that compute, not viewer kernels
    )

    return resolve_model(settings.checkpoint, allow_untrained=True)
