"""A bounded schemathesis run against the app's own OpenAPI document: generated requests for
every operation, valid and invalid (hypothesis strategies from schemathesis, run directly:
its pytest plugin does not load under this pytest), authenticated as a user. No response may
be a server error."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

EXAMPLES = 25  # per operation and mode: ~20 operations × 2 modes, about 10 s


def test_no_server_errors_on_generated_requests(service_env) -> None:  # type: ignore[no-untyped-def]
    from hurricane.api.app import create_app

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
    auth = {"Authorization": f"Bearer {service_env['tokens']['alice']}"}
    failures: list[str] = []
    calls = {"n": 0, "4xx": 0, "2xx": 0}
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 15

    for op in operations:
        for mode in GenerationMode:
            fixed: dict[str, Any] = {}
            if op.path.endswith("/events"):  # a live stream never ends by itself
                fixed = {"path_parameters": {"search_id": "nope-00000000"}}

            @given(case=op.as_strategy(mode, **fixed))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                response = case.call(headers=auth)
                calls["n"] += 1
                calls["4xx" if 400 <= response.status_code < 500 else "2xx"] += 1
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} ({case.meta}): "
                                    f"{response.status_code} {response.text[:300]}")

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (an operation without inputs)
                assert mode is GenerationMode.NEGATIVE, op.label
    assert not failures, "\n".join(failures[:10])
    print(calls)
    assert calls["n"] >= 300 and calls["2xx"] > 0 and calls["4xx"] > 0
