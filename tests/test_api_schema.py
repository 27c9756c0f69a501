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


STATEFUL_SCENARIOS = 40  # each a chain of at most 6 calls: about 200 requests, ~20 s


def test_stateful_run_over_links_against_the_live_service(live_api) -> None:  # type: ignore[no-untyped-def]
    """Schemathesis' state machine over the OpenAPI links (a created search's id feeds its
    routes, an imported table's name the table's routes), valid and invalid inputs mixed, over
    HTTP against uvicorn, Redis and S3 (moto): no response is a server error. Each scenario
    ends by cancelling what it submitted and deleting the tables it imported, so every
    scenario starts from the same state (hypothesis replays choices and needs that)."""
    import httpx
    from hypothesis import Phase
    from hypothesis.stateful import run_state_machine_as_test

    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json").exclude(
        path_regex=r"/events$")  # a live stream of a queued search never ends
    auth = live_api.headers("carol")
    seen: dict[tuple[str, str, int], int] = {}
    failures: list[str] = []
    api = httpx.Client(base_url=live_api.url, headers=auth, timeout=60)

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            # an Idempotency-Key outlives the scenario (a replay answers 200, not 201): the
            # state would differ between hypothesis' runs of the same choices
            for k in [k for k in (case.headers or {}) if k.lower() == "idempotency-key"]:
                del case.headers[k]

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": auth, "timeout": 60}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            key = (case.method, case.operation.path, response.status_code)
            seen[key] = seen.get(key, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} "
                                f"{response.text[:300]}")

        def teardown(self) -> None:
            for s in api.get("/v1/searches", params={"state": "queued", "limit": 200}).json()["data"]:
                api.delete(f"/v1/searches/{s['search_id']}")
            for d in api.get("/v1/devices").json():
                if d["table_scope"] == "own":
                    api.delete(f"/v1/devices/{d['name']}/table")

    run_state_machine_as_test(Machine, settings=settings(
        max_examples=STATEFUL_SCENARIOS, stateful_step_count=6, deadline=None, database=None,
        derandomize=True, phases=[Phase.generate], suppress_health_check=list(HealthCheck)))
    api.close()
    assert not failures, "\n".join(failures[:10])
    calls = sum(seen.values())
    linked = sum(n for (m, path, status), n in seen.items()
                 if "{search_id}" in path and status < 300)
    print(f"stateful: {calls} calls, {linked} answered 2xx on a linked search route; "
          f"{sorted(seen.items())}")
    assert 100 <= calls <= 600 and linked > 0
