"""Optimistic concurrency over HTTP: a record's version as its ETag, and a change refused (412)
when the version its editor read is no longer the current one.

A record that counts its changes (a version column bumped by every UPDATE) is tagged
``"v<version>"``, followed by marks for what changes its representation without a change to the
record (``"v7-overdue"``: time alone made it overdue). An ``If-Match`` names the versions a
change may be made to; the marks do not count there, as no one changed anything. The comparison
belongs inside the transaction of the change, after the row is locked.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from werkzeug.http import parse_etags

from shared.errors import DomainError

_VERSION_TAG = re.compile(r"v(0|[1-9][0-9]{0,17})(?:-[a-z]+)*")


class PreconditionFailed(DomainError):
    """The record changed since the copy the caller named was read; nothing was changed."""

    status = 412
    code = "precondition-failed"
    title = "Changed since it was read"


def version_etag(version: int, *marks: str) -> str:
    """The strong ETag of a record at ``version``, quoted as the header carries it."""
    return '"' + "-".join((f"v{version}", *marks)) + '"'


def versions_named(if_match: str | None) -> frozenset[int] | None:
    """The versions an If-Match header allows a change to; None when it allows any (no header,
    or ``*``). A weak tag, or a tag of no version of ours, allows none."""
    if not if_match or not if_match.strip():
        return None
    tags = parse_etags(if_match)
    if tags.star_tag:
        return None
    return frozenset(
        int(found.group(1))
        for tag in tags.as_set(include_weak=False)
        if tag and (found := _VERSION_TAG.fullmatch(tag))
    )


def check_version(
    version: int, expected: Collection[int] | None, *, what: str, current_etag: str
) -> None:
    """PreconditionFailed unless ``version`` is one the caller expected (None: any)."""
    if expected is not None and version not in expected:
        raise PreconditionFailed(
            f"{what} has changed since the copy sent in If-Match was read: read it again "
            f"(its ETag is now {current_etag}) and decide on what it says now",
            current_etag=current_etag,
        )
