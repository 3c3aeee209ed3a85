"""The grid and the people on it: nodes and who answers for them, residents and their flags,
typed addresses, and the health register."""

from __future__ import annotations

import pytest

from services.intake import directory
from services.intake.directory import Place
from services.intake.tests.builders import DUTY_OFFICER, a_resident
from shared.auth import Principal
from shared.errors import Forbidden, Invalid, NotFound

NURSE = Principal("nurse-wang", "health")


class TestTheGrid:
    def test_a_household_comes_with_its_unit_building_and_community(self, session):
        household = directory.ensure_node(session, Place("changshan-garden", "3", "2", "501"))
        unit = directory.get_node(session, household.parent_id)
        building = directory.get_node(session, unit.parent_id)
        community = directory.get_node(session, building.parent_id)
        assert [n.kind for n in (household, unit, building, community)] == [
            "household",
            "unit",
            "building",
            "community",
        ]
        assert household.path == "changshan-garden/3/2/501"
        assert community.parent_id is None

    def test_putting_a_place_on_the_grid_twice_keeps_one_node(self, session):
        first = directory.ensure_node(session, Place("changshan-garden", "3"))
        assert directory.ensure_node(session, Place("changshan-garden", "3")).id == first.id

    def test_each_node_names_the_person_responsible_for_it(self, session):
        leader = a_resident(session, number="502", name="Zhao Ming")
        unit = directory.ensure_node(session, Place("changshan-garden", "3", "2"))
        directory.update_node(
            session,
            node_id=unit.id,
            responsible={"name": "Zhao Ming", "phone": "139", "resident_id": leader.id},
        )
        assert (unit.responsible_name, unit.responsible_resident_id) == ("Zhao Ming", leader.id)
        with pytest.raises(NotFound, match="No resident"):
            directory.update_node(
                session, node_id=unit.id, responsible={"name": "X", "resident_id": "nobody"}
            )

    def test_a_level_without_the_one_above_it_is_no_place(self):
        with pytest.raises(Invalid, match="community"):
            Place(building="3").parts  # noqa: B018

    def test_listing_under_a_building_takes_in_its_units_and_households(self, session):
        for building, unit, number in (("3", "1", "101"), ("3", "2", "501"), ("5", "1", "101")):
            directory.add_household(
                session, community="changshan-garden", building=building, unit=unit, number=number
            )
        nodes, total = directory.list_nodes(session, under=Place("changshan-garden", "3"))
        assert [n.path for n in nodes] == [
            "changshan-garden/3",
            "changshan-garden/3/1",
            "changshan-garden/3/1/101",
            "changshan-garden/3/2",
            "changshan-garden/3/2/501",
        ]
        assert total == 5
        households, _ = directory.list_nodes(
            session, under=Place("changshan-garden"), kind="household"
        )
        assert len(households) == 3


class TestResidents:
    def test_a_resident_has_contact_language_and_flags(self, session):
        resident = a_resident(
            session, phone="138", language="en", is_disabled=True, has_reduced_mobility=True
        )
        assert (resident.phone, resident.language) == ("138", "en")
        assert resident.is_disabled and resident.has_reduced_mobility
        with pytest.raises(Invalid, match="language"):
            a_resident(session, number="502", language="fr")

    def test_residents_are_listed_beneath_a_place_by_their_flags(self, session):
        alone = a_resident(session, number="501", is_elderly=True, lives_alone=True)
        a_resident(session, number="502", is_elderly=True)
        a_resident(session, building="5", number="101", is_elderly=True, lives_alone=True)
        where = directory.ResidentFilter(
            place=Place("changshan-garden", "3"), is_elderly=True, lives_alone=True
        )
        found, total = directory.list_residents(session, where=where)
        assert ([r.id for r in found], total) == ([alone.id], 1)

    def test_a_resident_moves_to_another_household(self, session):
        resident = a_resident(session)
        directory.add_household(
            session, community="changshan-garden", building="5", unit="1", number="101"
        )
        moved = directory.update_resident(
            session,
            resident_id=resident.id,
            location={
                "community": "changshan-garden",
                "building": "5",
                "unit": "1",
                "household": "101",
            },
            lives_alone=True,
        )
        assert (moved.household.path, moved.lives_alone) == ("changshan-garden/5/1/101", True)


class TestTypedAddresses:
    @pytest.mark.parametrize(
        "text",
        [
            "3-2-501",
            " 3 - 2 - 501 ",
            "\uff13\uff0d\uff12\uff0d\uff15\uff10\uff11",  # full-width digits and dashes
            "Building 3, Unit 2, Household 501",
            "building 3 unit 2 room 501",
            "3栋2单元501",
            "3号楼2单元501室",
        ],
    )
    def test_each_way_of_writing_a_household_is_read(self, text):
        assert directory.parse_address(text) == ("3", "2", "501")

    @pytest.mark.parametrize("text", ["near the square", "3-2", "Building 3", ""])
    def test_an_address_naming_no_household_is_not_read(self, text):
        assert directory.parse_address(text) is None

    def test_an_address_is_matched_to_its_household(self, session):
        home = directory.add_household(
            session, community="changshan-garden", building="3", unit="2", number="501"
        )
        assert directory.match_address(session, "3栋2单元501") is home

    def test_the_same_address_in_two_communities_needs_the_community(self, session):
        ours = directory.add_household(
            session, community="changshan-garden", building="3", unit="2", number="501"
        )
        directory.add_household(
            session, community="liujiang-road", building="3", unit="2", number="501"
        )
        assert directory.match_address(session, "3-2-501") is None
        assert directory.match_address(session, "3-2-501", community="changshan-garden") is ours

    def test_an_address_not_on_the_grid_matches_nothing(self, session):
        assert directory.match_address(session, "9-9-909") is None


class TestTheHealthRegister:
    def test_the_health_role_reads_what_staff_and_it_wrote(self, session):
        resident = a_resident(session)
        directory.add_health_note(
            session, resident_id=resident.id, note="Diabetic", written_by=DUTY_OFFICER
        )
        directory.add_health_note(
            session, resident_id=resident.id, note="Insulin", written_by=NURSE
        )
        notes = directory.health_notes(session, resident_id=resident.id, reader=NURSE)
        assert [(n.note, n.written_by) for n in notes] == [
            ("Diabetic", "staff:duty-officer"),
            ("Insulin", "health:nurse-wang"),
        ]

    @pytest.mark.parametrize(
        "reader", [DUTY_OFFICER, Principal("r1", "resident"), Principal("c", "system", True)]
    )
    def test_no_one_else_reads_it(self, session, reader):
        resident = a_resident(session)
        with pytest.raises(Forbidden, match="health role"):
            directory.health_notes(session, resident_id=resident.id, reader=reader)

    def test_staff_over_http_may_add_a_note_but_not_read_the_record(self, client, resident_id):
        from services.intake.tests.test_api import bearer

        url = f"/v1/residents/{resident_id}/health-notes"
        staff = bearer("duty-officer", "staff")
        added = client.post(url, json={"note": "Uses a wheelchair"}, headers=staff)
        assert added.status_code == 201
        refused = client.get(url, headers=staff)
        assert refused.status_code == 403
        assert "Uses a wheelchair" not in refused.get_data(as_text=True)
