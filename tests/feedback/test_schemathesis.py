"""Schemathesis over the OpenAPI spec: generated requests (valid and invalid) to every operation, as an admin, on
a database with a project of each task type; no answer may be a server error. Bounded: a few examples each."""

from __future__ import annotations

import os

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck

from .conftest import annotator, comparison_items, new_project

EXAMPLES = int(os.environ.get("ALINEA_SCHEMATHESIS_EXAMPLES", "8"))
"""Examples per operation; set the variable higher for a longer hunt."""


@pytest.mark.slow
def test_no_generated_request_gives_a_server_error(app, client, admin):
    annotator(app, client, "ana")
    new_project(admin, members=["ana"], items=comparison_items(3))
    new_project(admin, task_type="chat", members=["ana"],
                items=[{"record": {"type": "prompt", "prompt": "Hello"}}])
    new_project(admin, task_type="rating", members=["ana"],
                items=[{"record": {"type": "demonstration", "prompt": "Hi", "response": "Hello"}}])
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25

    for operation in operations:
        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                             suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.generate])
        @hypothesis.given(case=operation.as_strategy())
        def run(case):
            response = case.call(headers=admin.headers)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                f"{response.text[:200]}")

        run()
    assert failures == []
