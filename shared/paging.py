"""One page of a query, and the total the pagination header reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from shared.database import Database

# Deep enough for any list; page x page size must stay a 64-bit offset in SQLite and PostgreSQL.
MAX_PAGE = 100_000


def fetch_page(
    session: Session, query: Select[Any], *, offset: int, limit: int
) -> tuple[list[Any], int]:
    """One page of ``query``'s rows and how many rows it matches in all."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    return list(session.scalars(query.offset(offset).limit(limit))), int(total or 0)


def paged(
    db: Database, pagination: Any, lister: Callable[..., tuple[list[Any], int]], **filters: Any
) -> list[Any]:
    """One page from ``lister(session, offset=, limit=, **filters)``, total set for the header."""
    with db.read() as session:
        page, total = lister(
            session, offset=pagination.first_item, limit=pagination.page_size, **filters
        )
    pagination.item_count = total
    return page
