"""Which addresses only this computer can reach: the one rule the launcher and the analysis service share.

A shared record like ``wire`` and ``gallery``: it imports neither side, so both may import it.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: reachable from elsewhere
        return False
