"""Schemathesis against the served OpenAPI document: generated requests, valid and not, to
every operation as an admin; none may get a server error. The API here has a database of its
own, since the generated requests change users and keys at random."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from sqlalchemy import Engine

from admin.api.context import ApiContext
from admin.api.control_plane import ControlPlane
from escalation.commands import escalation_inbox_path
from telephony.delivery import WorkerInboxes
from tests.api_data import Api, running_api
from tests.test_api_call_control import Inboxes

pytest_plugins = ["tests.db_support", "tests.api_support"]

EXAMPLES = 10  # per operation and mode; about 20 operations, well under a minute in all


@pytest.fixture(scope="module")
def fuzzed_api(postgres_server: Engine) -> Iterator[Api]:
    """The API with call control wired to a media worker's and the escalation service's
    inboxes (real Unix sockets, answering as a platform with one live call would)."""
    run_dir = Path(tempfile.mkdtemp(prefix="parley-fuzz-", dir="/tmp"))  # short socket paths
    try:
        with running_api(postgres_server) as running, Inboxes(run_dir, running.fixture.live):
            plane = ControlPlane(
                workers=WorkerInboxes(1, run_dir),
                escalation=escalation_inbox_path(run_dir),
                supervisors={"supervisor": frozenset({"general"})},
                phones={"desk": "sip:desk@127.0.0.1:5060"},
            )
            context: ApiContext = running.app.state.context
            running.app.state.context = dataclasses.replace(context, control=plane)
            yield running
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(fuzzed_api: Api, mode: GenerationMode) -> None:
    # schemathesis' own pytest plugin does not load under pytest 9, so this drives it directly
    spec = schemathesis.openapi.from_url(f"{fuzzed_api.url}/openapi.json")
    headers = fuzzed_api.actors["admin"].bearer()
    operations = [result.ok() for result in spec.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 20

    tested = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: Any) -> None:
            response = case.call(headers=headers, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        try:
            no_server_error()
        except Unsatisfiable:
            # Negative mode: nothing to get wrong (no parameters, no body); positive covers it.
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        tested += 1
    assert tested >= len(operations) // 2
