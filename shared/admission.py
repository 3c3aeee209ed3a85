"""Admission: every HTTP request is checked against its service's policy before its view runs.

The policy itself (``shared/policy.py``) knows nothing of HTTP; this is where a request meets it.
"""

from __future__ import annotations

from functools import partial

from flask import Blueprint, request
from flask.blueprints import BlueprintSetupState

from shared.auth import Principal
from shared.authentication import require
from shared.policy import Policy

# Flask answers these by itself for any route: no view runs, so no rule is needed.
_AUTOMATIC_METHODS = frozenset({"HEAD", "OPTIONS"})


class IncompletePolicy(RuntimeError):
    """An app has a view its policy has no rule for, or a rule names a view it lacks."""


def operation() -> str:
    """The operation the current HTTP request calls."""
    method = "get" if request.method == "HEAD" else request.method.lower()
    return f"{request.endpoint}.{method}"


def caller() -> Principal:
    """Who calls the current operation: the policy admitted them before the view ran."""
    return require()


def enforce(policy: Policy, *blueprints: Blueprint) -> None:
    """Check each call to the views of ``blueprints``, before the view runs, against
    ``policy``; and refuse to build an app whose views and rules do not match one to one.

    Call it once the blueprints' routes are declared, as the checks run in that order.
    """
    names = {blueprint.name for blueprint in blueprints}
    stray = sorted(name for name in policy.rules if name.split(".", 1)[0] not in names)
    if stray:
        raise IncompletePolicy(f"{policy.service}'s policy names views it has not: {stray}")
    for blueprint in blueprints:
        blueprint.before_request(partial(_admit, policy))
        blueprint.record_once(partial(_check_views, policy, blueprint.name))


def _admit(policy: Policy) -> None:
    rule = request.url_rule
    if request.method == "OPTIONS" and getattr(rule, "provide_automatic_options", False):
        return
    policy.check_role(operation(), caller())


def _check_views(policy: Policy, blueprint: str, state: BlueprintSetupState) -> None:
    views = {
        f"{rule.endpoint}.{method.lower()}"
        for rule in state.app.url_map.iter_rules()
        if rule.endpoint.startswith(f"{blueprint}.")
        for method in rule.methods or ()
        if method not in _AUTOMATIC_METHODS
        or (method == "OPTIONS" and not getattr(rule, "provide_automatic_options", False))
    }
    named = {name for name in policy.rules if name.startswith(f"{blueprint}.")}
    if views != named:
        raise IncompletePolicy(
            f"{policy.service}'s policy and its views differ: views without a rule "
            f"{sorted(views - named)}, rules without a view {sorted(named - views)}"
        )
