"""Which versions an If-Match header names."""

from __future__ import annotations

import pytest

from shared.conditional import version_etag, versions_named


@pytest.mark.parametrize(
    ("header", "versions"),
    [
        (None, None),
        ("*", None),
        ('"v5"', {5}),
        ('"v5-overdue"', {5}),
        ('"v5", "v7"', {5, 7}),
        ('"v0"', {0}),
        ('"v05"', set()),
        ('"v5 "', set()),
        ('W/"v5"', set()),
        ('"5"', set()),
        ('"v' + "9" * 19 + '"', set()),
    ],
)
def test_if_match_names_exactly_the_versions_our_etags_carry(header, versions) -> None:
    named = versions_named(header)

    assert named == (None if versions is None else frozenset(versions))


def test_every_etag_we_give_is_read_back_as_its_version() -> None:
    for version in (0, 1, 10, 123456789):
        assert versions_named(version_etag(version)) == {version}
        assert versions_named(version_etag(version, "overdue")) == {version}
