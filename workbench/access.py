"""Who may open the dashboard: the address Voila listens on, its path prefix and its login.

    access = Access.choose(host="0.0.0.0", base_url="/cqa/", token=None)   # a token is made here
    voila_command(..., access=access); env.update(access.voila_env())     # workbench.serve
    print(access.url(8866))                                                # http://box:8866/cqa/?token=...

The login is jupyter_server's identity provider, which Voila runs: a token (given as ``--token`` /
``CQA_TOKEN``, or made at start with ``secrets.token_urlsafe`` and printed in the URL) or a
password (``--password-hash``, a hash from ``jupyter_server.auth.passwd``). The first page opened
with ``?token=`` sets a login cookie; pages, the kernel API and the websockets refuse a request
with neither (a redirect to the login page for a page, 403 for the rest). Voila gets the token
through ``JUPYTER_TOKEN`` in its environment, never on a command line (``ps`` shows those).
``--no-auth`` is accepted only on a loopback address, and such a server answers only requests whose
``Host`` is a loopback address, ``localhost`` or the ``--host`` name (a DNS-rebinding page, whose
requests name its own host, gets 403). The login cookie lasts ``login_days`` (``--login-days``); a
client address holds at most ``kernels_per_client`` dashboards (``--kernels-per-client``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import socket
from dataclasses import dataclass, field

from workbench.hosts import is_loopback

LOOPBACK = "127.0.0.1"
LOGIN_DAYS = 7.0
"""Days a login cookie lasts (``--login-days``)."""
KERNELS_PER_CLIENT = 16
"""Dashboard kernels (open pages) one client address may hold (``--kernels-per-client``)."""
TOKEN_ENV = ("JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE")
"""Where jupyter_server reads a token from the environment (ours, or none: never the caller's)."""


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip().strip("[]"))
        return True
    except ValueError:
        return False


def normal_base_url(prefix: str | None) -> str:
    """``cqa``, ``/cqa`` or ``/cqa/`` -> ``/cqa/`` (Voila's form); empty -> ``/``."""
    parts = [p for p in (prefix or "").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"--base-url {prefix}: use a plain path such as /cqa/")
    return "/" + "".join(p + "/" for p in parts)


@dataclass(frozen=True)
class Access:
    """Voila's address, prefix and login. ``Access()``: loopback, no login (tests' own servers only)."""

    host: str = LOOPBACK
    base_url: str = "/"
    token: str | None = field(default=None, repr=False)
    password_hash: str | None = field(default=None, repr=False)
    generated: bool = False  # the token was made here (so it is printed in the URL)
    login_days: float = LOGIN_DAYS
    kernels_per_client: int = KERNELS_PER_CLIENT

    @classmethod
    def choose(cls, host: str = LOOPBACK, base_url: str | None = "/", token: str | None = None,
               password_hash: str | None = None, no_auth: bool = False, login_days: float = LOGIN_DAYS,
               kernels_per_client: int = KERNELS_PER_CLIENT) -> Access:
        """The access ``cqa workbench`` serves with: a login unless ``no_auth`` (loopback only)."""
        if not login_days > 0:
            raise ValueError(f"--login-days {login_days}: use a positive number of days (0.5 = 12 hours)")
        if kernels_per_client < 1:
            raise ValueError(f"--kernels-per-client {kernels_per_client}: use at least 1")
        return dataclasses.replace(cls._choose(host, base_url, token, password_hash, no_auth),
                                   login_days=login_days, kernels_per_client=kernels_per_client)

    @classmethod
    def _choose(cls, host: str, base_url: str | None, token: str | None, password_hash: str | None,
                no_auth: bool) -> Access:
        prefix = normal_base_url(base_url)
        if no_auth:
            if not is_loopback(host):
                raise ValueError(f"--no-auth is accepted only on a loopback address (127.0.0.1, ::1, localhost), "
                                 f"not --host {host}: use a token (--token / CQA_TOKEN, or the one printed at start)")
            if token or password_hash:
                raise ValueError("--no-auth and a token or password exclude each other: drop one")
            return cls(host, prefix)
        if token is not None and len(token) < 8:
            raise ValueError("the token is too short: use at least 8 characters (or none: one is made for you)")
        if token or password_hash:
            return cls(host, prefix, token or None, password_hash or None)
        return cls(host, prefix, secrets.token_urlsafe(24), None, generated=True)

    @property
    def login(self) -> bool:
        return bool(self.token or self.password_hash)

    @property
    def owner_only(self) -> bool:
        """Only its owner can open the dashboard: a loopback address, behind a login, without a path prefix
        (a prefix means a reverse proxy shares it, as ``deploy/`` does). Such a workbench may load any model
        file its owner types; any other keeps the allowlist (``workbench.service.guard``)."""
        return is_loopback(self.host) and self.login and self.base_url == "/"

    def voila_args(self) -> list[str]:
        """Voila's flags for the address, prefix and login (the token itself travels in voila_env)."""
        args = [f"--Voila.ip={self.host}", f"--Voila.base_url={self.base_url}",
                f"--WorkbenchVoila.login_days={self.login_days:g}",
                f"--WorkbenchVoila.kernels_per_client={self.kernels_per_client}"]
        if self.login:  # jupyter_server's IdentityProvider reads JUPYTER_TOKEN (or, with a password, none)
            args.append("--Voila.auto_token=True")
        else:  # no login (loopback only): answer loopback Host names only (a name given as --host too)
            names = ["localhost"] + ([self.host] if not _is_address(self.host) and self.host != "localhost" else [])
            args.append(f"--WorkbenchVoila.local_hosts={','.join(names)}")
        if self.password_hash:
            args.append(f"--PasswordIdentityProvider.hashed_password={self.password_hash}")
        return args

    def voila_env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with our token as JUPYTER_TOKEN (and no token of the caller's)."""
        out = {k: v for k, v in env.items() if k not in TOKEN_ENV}
        if self.token:
            out["JUPYTER_TOKEN"] = self.token
        return out

    def url(self, port: int) -> str:
        """The address to open: with the token when it was made here, else a hint where it is."""
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        elif is_loopback(host):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        page = f"http://{host}:{port}{self.base_url}"
        if self.generated:
            return f"{page}?token={self.token}"
        if self.token:
            return f"{page}?token=...  (your --token / CQA_TOKEN)"
        return page + ("  (log in with your password)" if self.password_hash else "")
