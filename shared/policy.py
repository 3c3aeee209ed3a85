"""Who may do what: each service's operations, the roles that may call them, and whose things.

An operation is named by its view: ``<blueprint>.<View>.<method>`` (``requests.Requests.post``),
the endpoint Flask gives the view plus the HTTP method in lower case (HEAD counts as GET). Each
service writes its ``Policy`` once, as a table in ``services/<name>/policy.py``; the web app
enforces it on every request (``shared/admission.py``), and building an app fails when a view
has no rule or a rule has no view. This module holds no HTTP: the domain uses it too.

Roles are checked once per request, before the view runs. Whose a thing is can only be told
once it is at hand, so ``check_owner`` is called there: by the view for what it names or reads,
by the domain for a row it locks in order to change it.

One rule for refusals, in every service:

- no credentials, or bad ones: 401;
- a role the operation never admits: 403, before anything is read or validated;
- a role admitted only to what is its own (a resident's requests, a volunteer's assignments,
  a person's inbox, account or transfers, what lies in the places a grid leader leads) asking
  for someone else's: 404, word for word what a thing that does not exist answers, so that no
  one learns whether another person's exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.auth import Principal
from shared.errors import Forbidden, NotFound

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

SYSTEM = "system"
STAFF = "staff"
VOLUNTEER = "volunteer"
RESIDENT = "resident"
# Reads residents' health notes, which nobody else may.
HEALTH = "health"
# Issues and revokes API keys: a person's token of that role, or an API key of the admin scope.
ADMIN = "admin"
# A resident responsible for places of the grid (a unit, a building, the community): acts for
# the residents there. The token's subject is their resident id.
GRID_LEADER = "grid_leader"
# A volunteer who leads a team: follows and steers the team's work. The token's subject is their
# volunteer id.
TEAM_LEAD = "team_lead"


class Owner:
    """How a resource names whom it belongs to: one of ``fields`` holds their id, or their
    address (``volunteer:42``) when ``by_address``. A field may be a dotted path."""

    def __init__(self, *fields: str, by_address: bool = False) -> None:
        if not fields:
            raise ValueError("an owner is named by at least one field")
        self.fields = fields
        self.by_address = by_address

    def _name_of(self, principal: Principal) -> str | None:
        if not self.by_address:
            return principal.subject
        try:
            return principal.address
        except ValueError:
            # A subject that cannot be part of an address owns nothing addressed.
            return None

    def owns(self, principal: Principal, resource: Any, *, session: Session | None = None) -> bool:
        """Whether ``resource`` (an object or a mapping) belongs to ``principal``; its own fields
        tell, so ``session`` is not needed."""
        name = self._name_of(principal)
        return name is not None and any(_read(resource, path) == name for path in self.fields)

    def scope(self, principal: Principal) -> dict[str, str]:
        """The filter that keeps a list to ``principal``'s own."""
        name = self._name_of(principal)
        if len(self.fields) != 1 or name is None:
            raise ValueError(f"no single filter selects what {principal.role} owns")
        return {self.fields[0]: name}


class QueriedOwner:
    """How a resource is told to be someone's by a query rather than by a field of its own (a
    place in the area a person leads): ``holds(session, principal, resource)`` answers for one
    resource, in the session it was read in; a list is kept to theirs by the filter
    ``{scope_field: subject}``, which the list's query must know how to apply."""

    def __init__(
        self, holds: Callable[[Session, Principal, Any], bool], *, scope_field: str
    ) -> None:
        self.holds = holds
        self.scope_field = scope_field

    def owns(self, principal: Principal, resource: Any, *, session: Session | None = None) -> bool:
        """Whether ``resource`` belongs to ``principal``, asked in ``session``."""
        if session is None:
            raise ValueError("whose this is is told by a query: give the session it was read in")
        return self.holds(session, principal, resource)

    def scope(self, principal: Principal) -> dict[str, str]:
        """The filter that keeps a list to ``principal``'s own."""
        return {self.scope_field: principal.subject}


Ownership = Owner | QueriedOwner


def _read(resource: Any, path: str) -> Any:
    for name in path.split("."):
        resource = resource.get(name) if isinstance(resource, Mapping) else getattr(resource, name)
    return resource


@dataclass(frozen=True)
class Rule:
    """Who may call one operation: ``anyone`` of some roles, others only on what they ``own``."""

    anyone: frozenset[str]
    own: Mapping[str, Ownership] = field(default_factory=dict)
    # The sentence a refused role is told, where the operation's roles need explaining.
    refusal: str | None = None

    @property
    def roles(self) -> frozenset[str]:
        return self.anyone | frozenset(self.own)

    def refused(self, role: str) -> str:
        """Why ``role`` may not call the operation."""
        if self.refusal:
            return f"{self.refusal}; a {role} credential may not"
        return f"Role {role!r} may not do this; it needs one of {sorted(self.roles)}"


def allow(
    *roles: str, own: Mapping[str, Ownership] | None = None, refusal: str | None = None
) -> Rule:
    """A rule admitting ``roles`` to anything and the roles of ``own`` to their own only."""
    both = set(roles) & set(own or {})
    if both:
        raise ValueError(f"roles {sorted(both)} are admitted both to anything and to their own")
    return Rule(anyone=frozenset(roles), own=dict(own or {}), refusal=refusal)


class Policy:
    """One service's rules by operation, and the checks every request of it goes through."""

    def __init__(self, service: str, *, roles: Iterable[str], rules: Mapping[str, Rule]) -> None:
        self.service = service
        self.roles = frozenset(roles)
        self.rules = dict(rules)
        for name, rule in self.rules.items():
            strangers = rule.roles - self.roles
            if strangers:
                raise ValueError(f"{name} admits {sorted(strangers)}, who never call {service}")

    def rule(self, operation: str) -> Rule:
        """The rule of ``operation``; an operation without one is refused to everyone."""
        try:
            return self.rules[operation]
        except KeyError:
            raise Forbidden(f"{self.service}'s policy has no rule for {operation}") from None

    def check_role(self, operation: str, principal: Principal) -> None:
        """Forbidden (403) unless ``principal``'s role may call ``operation`` at all."""
        rule = self.rule(operation)
        if principal.role not in rule.roles:
            raise Forbidden(rule.refused(principal.role))

    def check_owner(
        self,
        operation: str,
        principal: Principal,
        resource: Any,
        *,
        hidden_as: NotFound,
        session: Session | None = None,
    ) -> None:
        """Raise ``hidden_as`` (the resource's own 404) unless ``principal`` may touch it;
        ``session``, the one it was read in, for an owner told by a query."""
        self.check_role(operation, principal)
        owner = self.rule(operation).own.get(principal.role)
        if owner is not None and not owner.owns(principal, resource, session=session):
            raise hidden_as

    def scope(self, operation: str, principal: Principal) -> dict[str, str]:
        """Filters keeping a list to what ``principal`` may see; none for who may see all."""
        self.check_role(operation, principal)
        owner = self.rule(operation).own.get(principal.role)
        return {} if owner is None else owner.scope(principal)
