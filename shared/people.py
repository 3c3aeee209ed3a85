"""How a person (or a system) is named across services: ``<role>:<id>``.

The same address names a notification's recipient, a points account's holder and whoever did
a step of a request (accepted, completed, confirmed it), so one person is recognised as the same
person wherever they appear.
"""

from __future__ import annotations

import re

ROLES = ("resident", "volunteer", "staff", "system", "partner")
ADDRESS = r"^(resident|volunteer|staff|system|partner):[A-Za-z0-9._:-]{1,128}$"
_ADDRESS = re.compile(ADDRESS)


def address(role: str, subject: str) -> str:
    """The address of ``subject`` acting as ``role``, e.g. ``volunteer:42``."""
    named = f"{role}:{subject}"
    if not _ADDRESS.fullmatch(named):
        raise ValueError(f"{named!r} is not an address: <role>:<id>, role one of {ROLES}")
    return named


def role_of(named: str) -> str:
    """The role part of an address."""
    return named.split(":", 1)[0]
