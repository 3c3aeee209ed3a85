"""Who may do what at notify: each person reads their own inbox, staff keep the rest."""

from __future__ import annotations

from shared.auth import TOKEN_ROLES, Principal
from shared.errors import NotFound
from shared.policy import STAFF, Owner, Policy, allow

# An inbox is a person's own when it is addressed to them (the same id under another role is
# another person). A grid leader's is the resident's they are and a team lead's the
# volunteer's (``Principal.address``).
ADDRESSED_TO = Owner("recipient", by_address=True)


def _is_addressed(role: str) -> bool:
    """Whether notifications can be addressed to a person of ``role``. A ``health`` token (who
    reads residents' health notes) or an ``admin`` one names no address (``shared/people.py``),
    so it has no inbox: 403, rather than a 404 for every inbox it might name."""
    try:
        return bool(Principal(subject="someone", role=role).address)
    except ValueError:
        return False


# Every person a token names reads their own inbox, whatever their role; staff read any.
INBOX_OWNERS = {role: ADDRESSED_TO for role in TOKEN_ROLES if role != STAFF and _is_addressed(role)}

POLICY = Policy(
    "notify",
    # People only: other systems go through intake, so no API key is known here.
    roles=TOKEN_ROLES,
    rules={
        "notify.Inbox.get": allow(STAFF, own=INBOX_OWNERS),
        "notify.MessageRead.post": allow(STAFF, own=INBOX_OWNERS),
        "notify.Templates.get": allow(STAFF),
        "notify.Template.get": allow(STAFF),
        "notify.Template.put": allow(STAFF),
        "notify.Deliveries.get": allow(STAFF),
    },
)


def no_inbox(recipient: str) -> NotFound:
    """The answer for someone else's inbox."""
    return NotFound(f"No inbox {recipient}", field="recipient")


def no_message(recipient: str, message_id: str) -> NotFound:
    """The answer for a message that is not in the inbox, or of an inbox that is not yours."""
    return NotFound(f"No message {message_id} in the inbox of {recipient}")
