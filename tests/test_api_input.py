"""Bad input over the API: every case is a 4xx that names the problem (the field, the line,
the limit), never a 500, and nothing already stored changes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import tiny_spec_dict

MiB = 1 << 20
HEADER = "layer,op,median_ms,iqr_ms"


def spec(**over: Any) -> str:
    return json.dumps(tiny_spec_dict(**over))


JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}
CSV = {"Content-Type": "text/csv"}

# (id, method, path, body, headers, status, [substrings of the error, incl. the field])
CASES: list[tuple[str, str, str, str | bytes | None, dict[str, str], int, list[str]]] = [
    ("json-syntax", "POST", "/v1/searches", '{"name": ', JSON, 422, ["not valid JSON (line 1"]),
    ("yaml-syntax", "POST", "/v1/searches", "name: [a, b\nseed: 1", YAML, 422, ["not valid YAML (line"]),
    ("yaml-not-mapping", "POST", "/v1/searches", "- a\n- b\n", YAML, 422, ["mapping of fields, got list"]),
    ("json-scalar", "POST", "/v1/searches", "42", JSON, 422, ["mapping of fields, got int"]),
    ("empty-body", "POST", "/v1/searches", "", JSON, 422, ["the spec is empty"]),
    ("unknown-field", "POST", "/v1/searches", '{"bogus": 1}', JSON, 422, ["bogus", "Extra inputs"]),
    ("unknown-nested-field", "POST", "/v1/searches", '{"supernet": {"lrr": 0.1}}', JSON, 422,
     ["supernet.lrr", "Extra inputs"]),
    ("wrong-type", "POST", "/v1/searches", '{"seed": "abc"}', JSON, 422, ["seed", "valid integer"]),
    ("negative", "POST", "/v1/searches", '{"seed": -1}', JSON, 422, ["seed", "greater than or equal to 0"]),
    ("json-nan", "POST", "/v1/searches", '{"supernet": {"lr": NaN}}', JSON, 422,
     ["supernet.lr", "NaN is not a finite number"]),
    ("yaml-nan", "POST", "/v1/searches", "supernet: {lr: .nan}", YAML, 422,
     ["supernet.lr", "not a finite number"]),
    ("yaml-inf", "POST", "/v1/searches", "retrain:\n  lr: .inf\n", YAML, 422, ["retrain.lr", "inf"]),
    ("unknown-op", "POST", "/v1/searches", '{"space": {"ops": ["Conv_9"]}}', JSON, 422,
     ["space.ops", "unknown operator", "Conv_9", "allowed:"]),
    ("unknown-device", "POST", "/v1/searches", '{"devices": [{"name": "tpu", "budget_fraction": 0.5}]}',
     JSON, 422, ["devices", "unknown device 'tpu'", "allowed:"]),
    ("two-budgets", "POST", "/v1/searches",
     '{"devices": [{"name": "cpu", "budget_fraction": 0.5, "latency_budget_ms": 3}]}', JSON, 422,
     ["devices.0", "exactly one of"]),
    ("bad-name", "POST", "/v1/searches", '{"name": "Bad_Name"}', JSON, 422, ["name", "should match pattern"]),
    ("unknown-strategy", "POST", "/v1/searches", '{"strategy": "random"}', JSON, 422,
     ["strategy", "unknown strategy 'random'", "hurricane"]),
    ("input-size", "POST", "/v1/searches", '{"backbone": {"input_size": 100}}', JSON, 422,
     ["backbone", "multiple of 32"]),
    ("table-path", "POST", "/v1/searches", spec(devices=[{"name": "dsp", "table": "/data/dsp.csv",
                                                          "budget_fraction": 0.5}]),
     JSON, 422, ["devices.0.table", "not visible to the workers", "PUT /v1/devices/dsp/table"]),
    ("table-not-imported", "POST", "/v1/searches",
     spec(devices=[{"name": "dsp", "table": "imported", "budget_fraction": 0.5}]), JSON, 422,
     ["devices.0.table", "no table is imported for device 'dsp'"]),
    ("packed-gs", "POST", "/v1/searches", spec(dataset={"name": "packed", "path": "gs://b/set"}),
     JSON, 422, ["dataset", "gs:// is not a source for dataset 'packed'", "s3://bucket/prefix"]),
    ("eval-copies-below-copies", "POST", "/v1/searches",
     spec(dataset={"name": "cluttered-digits", "copies": 4, "eval_copies": 2}), JSON, 422,
     ["dataset", "eval_copies 2 is below copies 4", "allowed: 4 to 40"]),
    ("packed-no-credentials", "POST", "/v1/searches",
     spec(dataset={"name": "packed", "path": "s3://datasets/set"}), JSON, 422,
     ["dataset.path", "HURRICANE_S3_ACCESS_KEY"]),
    ("oversized-spec", "POST", "/v1/searches", '{"name": "' + "a" * (MiB + 10) + '"}', JSON, 413,
     ["limit is 1048576 bytes"]),
    ("unsupported-type", "POST", "/v1/searches", spec(), {"Content-Type": "text/plain"}, 415,
     ["text/plain", "application/json or application/yaml"]),
    ("not-utf8", "POST", "/v1/searches", b'{"name": "\xff\xfe"}', JSON, 422, ["not UTF-8"]),
    ("yaml-alias-bomb", "POST", "/v1/searches",
     "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
     "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n", YAML, 422,
     ["more than 200000 values"]),
    ("idempotency-key-too-long", "POST", "/v1/searches", spec(),
     {**JSON, "Idempotency-Key": "k" * 256}, 422, ["Idempotency-Key", "at most 255"]),
    ("bad-search-id", "GET", "/v1/searches/Bad_Id!", None, {}, 422, ["search_id", "pattern"]),
    ("unknown-search", "GET", "/v1/searches/nope-00000000", None, {}, 404, ["no search 'nope-00000000'"]),
    ("bad-state-filter", "GET", "/v1/searches?state=done", None, {}, 422, ["state", "pattern"]),
    ("bad-limit", "GET", "/v1/searches?limit=0", None, {}, 422, ["limit", "greater than or equal to 1"]),
    ("bad-cursor", "GET", "/v1/searches?cursor=a%2Fb", None, {}, 422, ["cursor", "pattern"]),
    ("prefix-traversal", "GET", "/v1/searches/{sid}/artifacts?prefix=../other", None, {}, 422,
     ["prefix", "'..'"]),
    ("key-traversal", "GET", "/v1/searches/{sid}/artifacts/retrain/%2e%2e/%2e%2e/index/x", None, {},
     422, ["key", "invalid artifact key"]),
    ("key-bad-chars", "GET", "/v1/searches/{sid}/artifacts/a%20b", None, {}, 422, ["invalid artifact key"]),
    ("missing-artifact", "GET", "/v1/searches/{sid}/artifacts/retrain/cpu/final.pt", None, {}, 404,
     ["no artifact 'retrain/cpu/final.pt'"]),
    ("unknown-fetch-device", "GET", "/v1/searches/{sid}/artifacts?device=gpu", None, {}, 404,
     ["not a target of this search", "cpu"]),
    ("report-not-yet", "GET", "/v1/searches/{sid}/report", None, {}, 404, ["no report yet", "queued"]),
    ("report-format", "GET", "/v1/searches/{sid}/report?format=pdf", None, {}, 422, ["format"]),
    ("resume-queued", "POST", "/v1/searches/{sid}/resume", None, {}, 409, ["only failed or cancelled"]),
    ("purge-not-bool", "DELETE", "/v1/searches/{sid}?purge=maybe", None, {}, 422, ["purge", "boolean"]),
    ("file-bad-signature", "GET", "/v1/files/searches/x/spec.json?expires=99999999999&sig=" + "0" * 64,
     None, {}, 403, ["invalid or has expired"]),
    ("file-expired", "GET", "/v1/files/searches/x/spec.json?expires=1&sig=" + "a" * 64, None, {}, 403,
     ["expired"]),
    ("file-sig-format", "GET", "/v1/files/searches/x/spec.json?expires=1&sig=zz", None, {}, 422, ["sig"]),
    ("table-header", "PUT", "/v1/devices/dsp/table", "a,b,c\n0,SEP_3,1.0\n", CSV, 422,
     ["line 1", "layer,op,median_ms"]),
    ("table-unknown-op", "PUT", "/v1/devices/dsp/table", f"{HEADER}\n0,SEP_3,1.0,\n0,Conv_9,2.0,\n",
     CSV, 422, ["line 3", "unknown op 'Conv_9'"]),
    ("table-negative", "PUT", "/v1/devices/dsp/table", f"{HEADER}\n0,SEP_3,-1.0,\n", CSV, 422,
     ["line 2", "median_ms must be a finite number >= 0"]),
    ("table-nan", "PUT", "/v1/devices/dsp/table", f"{HEADER}\n0,SEP_3,nan,\n", CSV, 422,
     ["line 2", "'nan'"]),
    ("table-columns", "PUT", "/v1/devices/dsp/table", f"{HEADER}\n0,SEP_3\n", CSV, 422,
     ["line 2", "3 or 4 columns"]),
    ("table-duplicate", "PUT", "/v1/devices/dsp/table", f"{HEADER}\n0,SEP_3,1,\n0,SEP_3,2,\n", CSV, 422,
     ["line 3", "appears twice"]),
    ("table-gap", "PUT", "/v1/devices/dsp/table", f"{HEADER}\n0,SEP_3,1,\n2,SEP_3,2,\n", CSV, 422,
     ["without gaps"]),
    ("table-json-syntax", "PUT", "/v1/devices/dsp/table", '{"ops": ', JSON, 422, ["not valid JSON"]),
    ("table-json-shape", "PUT", "/v1/devices/dsp/table", '{"layers": []}', JSON, 422,
     ["ops", "expected an object"]),
    ("table-device-name", "PUT", "/v1/devices/Bad_Name/table", f"{HEADER}\n0,SEP_3,1,\n", CSV, 422,
     ["name", "pattern"]),
    ("table-oversized", "PUT", "/v1/devices/dsp/table", HEADER + "\n" + "0,SEP_3,1.0,\n" * (1 << 20), CSV,
     413, ["limit is 10485760 bytes"]),
    ("table-type", "PUT", "/v1/devices/dsp/table", "x", {"Content-Type": "image/png"}, 415, ["image/png"]),
    ("correlate-lengths", "POST", "/v1/devices/correlate", '{"latencies": {"a": [1, 2], "b": [1]}}', JSON,
     422, ["latencies", "same number of architectures"]),
]


@pytest.fixture
def api(service_env) -> TestClient:  # type: ignore[no-untyped-def]
    from hurricane.api.app import create_app

    return TestClient(create_app(), headers={
        "Authorization": f"Bearer {service_env['tokens']['alice']}"})


def test_there_are_at_least_30_cases() -> None:
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "needles"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_4xx_naming_the_problem(api, service_env, method, path, body, headers,  # type: ignore[no-untyped-def]
                                               status, needles) -> None:
    sid = api.post("/v1/searches", json=tiny_spec_dict()).json()["search_id"]
    store = service_env["store"]
    before = {k: store.get_bytes(k) for k in store.list("searches")}
    r = api.request(method, path.replace("{sid}", sid), content=body, headers=headers)
    assert r.status_code == status, r.text[:500]
    detail = r.json()["detail"]
    text = json.dumps(detail) + " ".join(  # field paths as people write them: devices.0.table
        ".".join(str(p) for p in d["loc"][1:]) for d in detail if isinstance(detail, list))
    for needle in needles:
        assert needle in text, (needle, text[:800])
    after = {k: store.get_bytes(k) for k in store.list("searches")}
    assert after == before  # a refused request changes nothing stored
