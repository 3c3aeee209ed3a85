"""dispatch's HTTP API: volunteers' assignments, and the teams, volunteers and rules staff keep."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters

from services.dispatch import routing
from services.dispatch.policy import POLICY, no_assignment
from services.dispatch.schemas import (
    AssignmentQuerySchema,
    AssignmentSchema,
    CompletionSchema,
    RoutingRuleCreateSchema,
    RoutingRuleQuerySchema,
    RoutingRuleSchema,
    TeamCreateSchema,
    TeamSchema,
    TeamUpdateSchema,
    VolunteerCreateSchema,
    VolunteerQuerySchema,
    VolunteerSchema,
)
from shared.admission import caller, enforce, operation
from shared.openapi import Blueprint
from shared.paging import paged
from shared.service_app import current_service

blp = Blueprint(
    "assignments",
    __name__,
    url_prefix="/v1",
    description="Assignments: requests handed to volunteers",
)
roster = Blueprint(
    "roster",
    __name__,
    url_prefix="/v1",
    description="Teams, volunteers and the rules that route requests to them",
)
# The same words for the same failure on every endpoint; who may do what is in policy.py.
STAFF_ONLY = "The caller is not staff"
STAFF_OR_VOLUNTEER = "The caller is neither staff, nor a volunteer, nor a team lead"
STAFF_OR_TEAM_LEAD = "The caller is neither staff nor a team lead"
NO_ASSIGNMENT = (
    "No such assignment, or a volunteer asked for someone else's, or a team lead for one "
    "of a team they do not lead"
)


@blp.route("/assignments")
class Assignments(MethodView):
    @blp.arguments(AssignmentQuerySchema, location="query")
    @blp.response(200, AssignmentSchema(many=True))
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.paginate()
    def get(self, query: dict[str, Any], pagination_parameters: PaginationParameters) -> Any:
        """List assignments, newest first"""
        query.update(POLICY.scope(operation(), caller()))
        return paged(current_service().db, pagination_parameters, routing.list_assignments, **query)


@blp.route("/assignments/<assignment_id>")
class Assignment(MethodView):
    @blp.response(200, AssignmentSchema)
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(404, description=NO_ASSIGNMENT)
    def get(self, assignment_id: str) -> Any:
        """Show an assignment"""
        with current_service().db.read() as session:
            assignment = routing.get_assignment(session, assignment_id)
            POLICY.check_owner(
                operation(), caller(), assignment, hidden_as=no_assignment(assignment_id)
            )
            return assignment


@blp.route("/assignments/<assignment_id>/acceptance")
class Acceptance(MethodView):
    @blp.response(200, AssignmentSchema)
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(404, description=NO_ASSIGNMENT)
    @blp.alt_response(
        409,
        description="Illegal transition: the assignment is not assigned (already accepted, "
        "completed or confirmed, or withdrawn); the problem names its current status",
    )
    def post(self, assignment_id: str) -> Any:
        """Accept an assignment"""
        with current_service().db.transaction() as session:
            return routing.accept_assignment(
                session, assignment_id=assignment_id, accepted_by=caller()
            )


@blp.route("/assignments/<assignment_id>/completion")
class Completion(MethodView):
    @blp.arguments(CompletionSchema)
    @blp.response(200, AssignmentSchema)
    @blp.alt_response(403, description=STAFF_OR_VOLUNTEER)
    @blp.alt_response(404, description=NO_ASSIGNMENT)
    @blp.alt_response(
        409,
        description="Illegal transition: the assignment is not accepted (still assigned, "
        "already completed or confirmed, or withdrawn); the problem names its current status",
    )
    @blp.alt_response(
        422,
        description="Invalid fields, or a participant who is not the assigned volunteer or an "
        "active volunteer of their team, or is named twice, or participants' hours that do not "
        "fit the service's (none more than it took, one at least all of it)",
    )
    def post(self, data: dict[str, Any], assignment_id: str) -> Any:
        """Report an accepted assignment done, with the hours it took and who took part"""
        with current_service().db.transaction() as session:
            return routing.complete_assignment(
                session, assignment_id=assignment_id, completed_by=caller(), **data
            )


@roster.route("/teams")
class Teams(MethodView):
    @roster.response(200, TeamSchema(many=True))
    @roster.alt_response(403, description=STAFF_ONLY)
    @roster.paginate()
    def get(self, pagination_parameters: PaginationParameters) -> Any:
        """List the volunteer teams"""
        return paged(current_service().db, pagination_parameters, routing.list_teams)

    @roster.arguments(TeamCreateSchema)
    @roster.response(201, TeamSchema)
    @roster.alt_response(403, description=STAFF_ONLY)
    @roster.alt_response(409, description="A team of that name already exists")
    def post(self, data: dict[str, Any]) -> Any:
        """Register a volunteer team"""
        with current_service().db.transaction() as session:
            return routing.create_team(session, **data)


@roster.route("/teams/<team_id>")
class Team(MethodView):
    @roster.arguments(TeamUpdateSchema)
    @roster.response(200, TeamSchema)
    @roster.alt_response(403, description=STAFF_ONLY)
    @roster.alt_response(404, description="No such team")
    @roster.alt_response(409, description="A team of that name already exists")
    @roster.alt_response(
        422, description="Invalid fields, or a lead who is not an active member of the team"
    )
    def patch(self, data: dict[str, Any], team_id: str) -> Any:
        """Rename or describe a team, or name the volunteer who leads it"""
        with current_service().db.transaction() as session:
            return routing.update_team(session, team_id=team_id, **data)


@roster.route("/volunteers")
class Volunteers(MethodView):
    @roster.arguments(VolunteerQuerySchema, location="query")
    @roster.response(200, VolunteerSchema(many=True))
    @roster.alt_response(403, description=STAFF_OR_TEAM_LEAD)
    @roster.paginate()
    def get(self, query: dict[str, Any], pagination_parameters: PaginationParameters) -> Any:
        """List volunteers; a team lead, those of the teams they lead"""
        query.update(POLICY.scope(operation(), caller()))
        return paged(current_service().db, pagination_parameters, routing.list_volunteers, **query)

    @roster.arguments(VolunteerCreateSchema)
    @roster.response(201, VolunteerSchema)
    @roster.alt_response(403, description=STAFF_ONLY)
    @roster.alt_response(422, description="Invalid fields, or no such team")
    def post(self, data: dict[str, Any]) -> Any:
        """Register a volunteer"""
        with current_service().db.transaction() as session:
            return routing.register_volunteer(session, **data)


@roster.route("/routing-rules")
class RoutingRules(MethodView):
    @roster.arguments(RoutingRuleQuerySchema, location="query")
    @roster.response(200, RoutingRuleSchema(many=True))
    @roster.alt_response(403, description=STAFF_ONLY)
    @roster.paginate()
    def get(self, query: dict[str, Any], pagination_parameters: PaginationParameters) -> Any:
        """List routing rules by category, the winning rule first"""
        return paged(
            current_service().db, pagination_parameters, routing.list_routing_rules, **query
        )

    @roster.arguments(RoutingRuleCreateSchema)
    @roster.response(201, RoutingRuleSchema)
    @roster.alt_response(403, description=STAFF_ONLY)
    @roster.alt_response(409, description="The volunteer already has an active rule for it")
    @roster.alt_response(422, description="Invalid fields, or no such active volunteer")
    def post(self, data: dict[str, Any]) -> Any:
        """Route a category of requests to a volunteer"""
        with current_service().db.transaction() as session:
            return routing.add_routing_rule(session, **data)


enforce(POLICY, blp, roster)
