"""intake's typed clients, generated from its OpenAPI document (``make clients``), type-check and
work against intake running as a real process: what keeps the document good enough to generate
from.

The Python client is checked by mypy --strict and called from here; the TypeScript client is
checked by tsc with a small console program (devtools/clients/typescript/usage.ts), which node
then runs. Without node or npm the TypeScript half is skipped, except under CI, where it fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devtools.clients import PYTHON_PACKAGE, TYPESCRIPT_SOURCES, GenerationError, check_document
from devtools.containers import is_ci
from devtools.processes import ROOT

# The document and its clients are the same whatever intake stores its requests in.
pytestmark = [pytest.mark.e2e, pytest.mark.sqlite]

STEP_TIMEOUT = 240


def run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False
    )
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def generate(out: Path, language: str) -> Path:
    run([sys.executable, "-m", "devtools.clients", "--out", str(out), "--only", language], ROOT)
    return out / language


@pytest.fixture(scope="session")
def clients_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clients")


@pytest.fixture(scope="session")
def python_client(clients_dir: Path) -> Iterator[Path]:
    """The generated Python project, its package importable for the session."""
    project = generate(clients_dir, "python")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(project))
        yield project
    for name in [name for name in sys.modules if name.split(".")[0] == PYTHON_PACKAGE]:
        del sys.modules[name]


@pytest.fixture(scope="session")
def typescript_client(clients_dir: Path) -> Path:
    """The generated TypeScript client with its npm packages, the console program beside it."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        why = f"{' and '.join(missing)} not installed: the TypeScript client cannot be generated"
        if is_ci():
            pytest.fail(f"{why} (CI requires it)")
        pytest.skip(why)
    out = generate(clients_dir, "typescript")
    shutil.copyfile(TYPESCRIPT_SOURCES / "usage.ts", out / "usage.ts")
    return out


@pytest.fixture
def demo(stack: Any) -> dict[str, Any]:
    """The demo community and a console's API key."""
    return stack.seed()


def test_the_generated_python_client_passes_mypy_strict(python_client: Path) -> None:
    output = run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(python_client / ".mypy_cache"),
            PYTHON_PACKAGE,
        ],
        python_client,
    )
    assert "Success: no issues found" in output


def test_the_typescript_client_and_a_console_program_using_it_pass_tsc(
    typescript_client: Path,
) -> None:
    run([str(typescript_client / "node_modules" / ".bin" / "tsc"), "--noEmit"], typescript_client)


def test_a_system_submits_reads_and_lists_requests_through_the_python_client(
    python_client: Path, stack: Any, demo: dict[str, Any]
) -> None:
    from redvest_intake_client import AuthenticatedClient
    from redvest_intake_client.api.requests import (
        get_v1_requests,
        get_v1_requests_request_id,
        post_v1_requests,
    )
    from redvest_intake_client.models import (
        Assignee,
        Location,
        Request,
        RequestCreate,
        TimelineEntry,
    )

    resident_id = demo["seeded"]["intake"]["residents"]["3-2-501"]
    client = AuthenticatedClient(
        base_url=stack.urls["intake"],
        token=demo["intake_api_key"],
        prefix="",
        auth_header_name="X-API-Key",
        raise_on_unexpected_status=True,
    )
    since = datetime.now(UTC)
    with client:
        submitted = post_v1_requests.sync_detailed(
            client=client,
            body=RequestCreate(
                category="knife_sharpening",
                summary="Sharpen three kitchen knives",
                details="Submitted by the Python client",
                resident_id=resident_id,
                external_ref="console-py-1",
            ),
        )
        other = post_v1_requests.sync(
            client=client,
            body=RequestCreate(
                category="plumbing_repair", summary="A dripping tap", resident_id=resident_id
            ),
        )
        assert submitted.status_code == 201, submitted.content
        created = submitted.parsed
        assert isinstance(created, Request) and isinstance(created.id, str)
        assert isinstance(other, Request) and other.id != created.id
        assert submitted.headers["Location"].endswith(f"/v1/requests/{created.id}")

        read = get_v1_requests_request_id.sync(client=client, request_id=created.id)
        listed = get_v1_requests.sync_detailed(
            client=client,
            resident_id=resident_id,
            category=["knife_sharpening"],
            created_after=since,
        )

    assert isinstance(read, Request)
    assert (read.id, read.category, read.summary, read.details) == (
        created.id,
        "knife_sharpening",
        "Sharpen three kitchen knives",
        "Submitted by the Python client",
    )
    assert (read.resident_id, read.external_ref, read.channel) == (
        resident_id,
        "console-py-1",
        "api",
    )
    assert read.on_behalf is True
    assert isinstance(read.created_at, datetime) and read.created_at >= since
    # Worked out by intake rather than stored as sent, and typed all the same: as submitted,
    # and as read (by then dispatch may have assigned it).
    assert created.location == read.location == Location(**demo["resident"]["location"])
    assert (created.assignee, created.reporter, created.duplicates) == (None, None, [])
    assert created.is_overdue is False
    assert isinstance(created.due_at, datetime) and created.due_at > created.created_at
    assert [entry.status for entry in created.timeline] == [created.status]
    assert read.assignee is None or isinstance(read.assignee, Assignee)
    assert all(isinstance(entry, TimelineEntry) for entry in read.timeline)
    assert listed.status_code == 200, listed.content
    assert isinstance(listed.parsed, list)
    assert [request.id for request in listed.parsed] == [created.id]
    assert json.loads(listed.headers["X-Pagination"])["total"] == 1


def test_a_console_submits_reads_and_lists_requests_through_the_typescript_client(
    typescript_client: Path, stack: Any, demo: dict[str, Any]
) -> None:
    # Type-checked by the test above: here it is only compiled.
    run([str(typescript_client / "node_modules" / ".bin" / "tsc"), "--noCheck"], typescript_client)
    resident_id = demo["seeded"]["intake"]["residents"]["3-2-502"]
    output = run(
        [
            "node",
            str(typescript_client / "dist" / "usage.js"),
            stack.urls["intake"],
            demo["intake_api_key"],
            resident_id,
            "knife_sharpening",
        ],
        typescript_client,
    )

    answer = json.loads(output)
    created = answer["created"]
    assert created["status"] == 201
    assert created["location"].endswith(f"/v1/requests/{created['id']}")
    assert answer["read"] == {
        "id": created["id"],
        "category": "knife_sharpening",
        "summary": "Sharpen two kitchen knives",
        "details": "Submitted by the TypeScript client",
        "resident_id": resident_id,
        "external_ref": "console-ts-1",
        "on_behalf": True,
        "channel": "api",
    }
    assert answer["listed"] == [created["id"]]
    assert answer["pagination"]["total"] == 1


def test_a_property_the_document_leaves_untyped_fails_the_generation() -> None:
    document: dict[str, Any] = {
        "components": {
            "schemas": {
                "Request": {"properties": {"id": {"type": "string"}, "timeline": {}}},
                "Parcel": {"properties": {"size": {"readOnly": True}, "box": {"$ref": "#/x"}}},
            }
        }
    }

    with pytest.raises(GenerationError, match=r"no type.*: Parcel\.size, Request\.timeline\. "):
        check_document(document)
    del document["components"]["schemas"]["Parcel"]["properties"]["size"]
    document["components"]["schemas"]["Request"]["properties"]["timeline"] = {
        "allOf": [{"$ref": "#/components/schemas/TimelineEntry"}]
    }
    check_document(document)
