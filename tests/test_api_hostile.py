"""Hostile requests against the real service (uvicorn, Redis, an S3-protocol store): hand-written
ones (nesting depth, huge numbers, Unicode, bad encodings, YAML tags and bombs, tables,
correlate, paths and queries, every admission limit, data sources, cross-tenant, auth and body
limits) and ones generated from the routes' parameters and from the spec schema's fields.
Each must be answered with the status it names (a 4xx whose detail names the field), never a
5xx; the run prints the count per status."""

from __future__ import annotations

import copy
import json
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from hurricane.spec import SearchSpec
from tests.api_server import ApiServer
from tests.conftest import tiny_spec_dict

JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}
CSV = {"Content-Type": "text/csv"}
HEADER = "layer,op,median_ms,iqr_ms"
OPS = ["SEP_3", "MB_3_1", "MB_5_3_SE", "Choice_3", "ChoiceX"]
SEEN: Counter[int] = Counter()  # status codes of every request this module sent


@dataclass
class Case:
    id: str
    method: str
    path: str
    body: str | bytes | None = None
    headers: dict[str, Any] = field(default_factory=dict)  # str, or bytes sent as they are
    status: int | tuple[int, ...] = 422
    needles: tuple[str, ...] = ()  # in the detail (dotted field paths included)
    user: str | None = "alice"


def spec(**over: Any) -> str:
    return json.dumps(tiny_spec_dict(**over))


def table_csv(rows: list[str]) -> str:
    return "\n".join([HEADER, *rows])


def good_rows(layers: int = 5) -> list[str]:
    return [f"{i},{op},{0.1 * (i + 1) + j * 0.01:.3f}," for i in range(layers)
            for j, op in enumerate(OPS)]


def nested(depth: int, leaf: Any = 1) -> Any:
    out = leaf
    for _ in range(depth):
        out = [out]
    return out


def detail_text(r: httpx.Response) -> str:
    try:
        detail = r.json().get("detail")
    except ValueError:
        return r.text
    text = json.dumps(detail, ensure_ascii=False)
    if isinstance(detail, list):  # field paths as people write them: devices.0.table
        for d in detail:  # and with where they were: query.limit, path.key
            loc = [str(p) for p in d.get("loc", [])]
            text += f" {'.'.join(loc[1:])} {'.'.join(loc)}"
    return text


# ----- hand-written -----------------------------------------------------------------------

def hand_written(data_root: str) -> list[Case]:
    big = "9" * 5000
    cases = [
        # nesting depth
        Case("json-deep-array", "POST", "/v1/searches", "[" * 100_000 + "]" * 100_000, JSON,
             needles=("nested deeper than 32 levels",)),
        Case("json-deep-object", "POST", "/v1/searches", '{"a":' * 5000 + "1" + "}" * 5000, JSON,
             needles=("nested deeper than 32 levels", "a.a.a")),
        Case("json-deep-in-field", "POST", "/v1/searches",
             json.dumps({**tiny_spec_dict(), "space": {"ops": nested(40, "SEP_3")}}), JSON,
             needles=("space.ops.0.0", "nested deeper")),
        Case("json-deep-unterminated", "POST", "/v1/searches", '{"a": ' + "[" * 200_000, JSON,
             needles=("nested deeper",)),
        Case("yaml-deep-flow", "POST", "/v1/searches", "a: " + "[" * 50_000 + "]" * 50_000, YAML,
             needles=("nested deeper", "a.0.0")),
        Case("yaml-deep-block", "POST", "/v1/searches",
             "".join(" " * i + f"k{i}:\n" for i in range(300)), YAML,
             needles=("nested deeper", "k0.k1.k2")),
        Case("yaml-deep-alias-chain", "POST", "/v1/searches",
             "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 200)),
             YAML, needles=("nested deeper", "through alias")),
        Case("yaml-alias-bomb", "POST", "/v1/searches",
             "a: &a [" + ",".join(["1"] * 20) + "]\n" + "".join(
                 f"{c}: &{c} [" + ",".join([f"*{p}"] * 20) + "]\n"
                 for p, c in zip("abcde", "bcdef", strict=True)), YAML,
             needles=("more than 200000 values",)),
        Case("yaml-merge-bomb", "POST", "/v1/searches",
             "a: &a {x: 1, y: 2}\n" + "".join(
                 f"m{i}: &m{i} {{<<: [" + ",".join([f"*m{i - 1}" if i else "*a"] * 1) + "]}\n"
                 for i in range(60)), YAML, needles=("nested deeper",)),
        # numbers
        Case("json-huge-int-seed", "POST", "/v1/searches", spec().replace('"seed": 3', f'"seed": {big}'),
             JSON, needles=("seed", "5000 digits")),
        Case("json-huge-negative-int", "POST", "/v1/searches",
             spec().replace('"seed": 3', f'"seed": -{big}'), JSON, needles=("seed", "digits")),
        Case("json-huge-int-nested", "POST", "/v1/searches",
             spec().replace('"iterations": 12', f'"iterations": {big}'), JSON,
             needles=("supernet.iterations", "digits")),
        Case("json-seed-2^200", "POST", "/v1/searches", spec(seed=2**200), JSON,
             needles=("seed", "61 digits")),
        Case("json-seed-2^40", "POST", "/v1/searches", spec(seed=2**40), JSON,
             needles=("seed", "less than or equal to 4294967295")),
        Case("json-1e999", "POST", "/v1/searches",
             spec().replace('"lr": 0.05, "checkpoint_every": 5', '"lr": 1e999, "checkpoint_every": 5'),
             JSON, needles=("supernet.lr", "inf is not a finite number")),
        Case("json-minus-infinity", "POST", "/v1/searches",
             spec().replace('"lr": 0.05, "checkpoint_every": 5', '"lr": -Infinity, "checkpoint_every": 5'),
             JSON, needles=("supernet.lr", "-Infinity is not a finite number")),
        Case("json-nan-budget", "POST", "/v1/searches",
             spec().replace('"budget_fraction": 0.5', '"budget_fraction": NaN'), JSON,
             needles=("devices.0.budget_fraction", "NaN")),
        Case("json-long-float-text", "POST", "/v1/searches",
             spec().replace('"budget_fraction": 0.5', '"budget_fraction": 0.' + "5" * 100_000),
             JSON, status=(201,)),  # a long but finite float is just a float
        Case("yaml-huge-int", "POST", "/v1/searches", f"seed: {big}\n", YAML,
             needles=("seed", "5000 characters")),
        Case("yaml-sexagesimal", "POST", "/v1/searches", "seed: " + ":".join(["59"] * 50_000),
             YAML, needles=("seed", "at most 30 digits")),
        Case("yaml-inf", "POST", "/v1/searches", "supernet: {lr: -.inf}", YAML,
             needles=("supernet.lr", "-inf")),
        Case("yaml-nan-key", "POST", "/v1/searches", ".nan: 1", YAML, needles=("a key must be text",)),
        # encodings and Unicode
        Case("not-utf8", "POST", "/v1/searches", b'{"name": "\xff\xfe"}', JSON,
             needles=("not UTF-8 text (byte 10)",)),
        Case("utf16", "POST", "/v1/searches", spec().encode("utf-16"), JSON,
             needles=("not UTF-8",)),
        Case("utf8-surrogate-bytes", "POST", "/v1/searches", b'{"name": "\xed\xa0\x80"}', JSON,
             needles=("not UTF-8",)),
        Case("overlong-utf8", "POST", "/v1/searches", b'{"name": "\xc0\xaf"}', JSON,
             needles=("not UTF-8",)),
        Case("utf8-bom", "POST", "/v1/searches", b"\xef\xbb\xbf" + spec().encode(), JSON,
             needles=("not valid JSON", "BOM")),
        Case("nul-char", "POST", "/v1/searches", spec().replace("tiny", "ti\x00ny"), JSON,
             needles=("NUL",)),
        Case("json-lone-surrogate-value", "POST", "/v1/searches", spec(name="x").replace('"x"', '"\\ud800"'),
             JSON, needles=("name", "lone surrogate")),
        Case("json-lone-surrogate-key", "POST", "/v1/searches", '{"\\udfff": 1}', JSON,
             needles=("a key must be text",)),
        Case("yaml-lone-surrogate", "POST", "/v1/searches", 'name: "\\ud800"\n', YAML,
             needles=("not valid YAML", "invalid Unicode character")),
        Case("name-emoji", "POST", "/v1/searches", spec(name="🌀-nas"), JSON,
             needles=("name", "pattern")),
        Case("name-rtl", "POST", "/v1/searches", spec(name="ab\u202ecd"), JSON, needles=("name",)),
        Case("device-fullwidth", "POST", "/v1/searches",
             spec(devices=[{"name": "ｃｐｕ", "budget_fraction": 0.5}]), JSON,
             needles=("devices.0.name", "pattern")),
        Case("charset-latin1", "POST", "/v1/searches", spec().encode("utf-8"),
             {"Content-Type": "application/json; charset=latin-1"}, status=(201,)),
        Case("empty", "POST", "/v1/searches", b"", JSON, needles=("the spec is empty",)),
        Case("whitespace", "POST", "/v1/searches", " \n\t ", JSON, needles=("empty",)),
        Case("json-null", "POST", "/v1/searches", "null", JSON, needles=("got NoneType",)),
        Case("json-string", "POST", "/v1/searches", '"spec"', JSON, needles=("got str",)),
        Case("json-trailing", "POST", "/v1/searches", spec() + " x", JSON, needles=("Extra data",)),
        Case("json-dup-keys", "POST", "/v1/searches", '{"seed": 1, "seed": -1}', JSON,
             needles=("seed",)),
        Case("no-content-type", "POST", "/v1/searches", spec(), {"Content-Type": ""},
             status=(201,)),
        Case("xml", "POST", "/v1/searches", "<spec/>", {"Content-Type": "application/xml"},
             status=415, needles=("application/xml",)),
        # YAML tags
        Case("yaml-python-tag", "POST", "/v1/searches", '!!python/object/apply:os.system ["id"]',
             YAML, needles=("not valid YAML",)),
        Case("yaml-binary-seed", "POST", "/v1/searches", "seed: !!binary aGVsbG8=", YAML,
             needles=("seed",)),
        Case("yaml-timestamp-name", "POST", "/v1/searches", "name: 2001-12-14", YAML,
             needles=("name",)),
        Case("yaml-two-docs", "POST", "/v1/searches", "seed: 1\n---\nseed: 2\n", YAML,
             needles=("not valid YAML",)),
        Case("yaml-unhashable-key", "POST", "/v1/searches", "? [a, b]\n: 1\n", YAML,
             needles=("not valid YAML",)),
        Case("yaml-bad-anchor", "POST", "/v1/searches", "seed: *nope\n", YAML,
             needles=("not valid YAML",)),
        # tables
        Case("table-superscript-layer", "PUT", "/v1/devices/t1/table", table_csv(["²,SEP_3,1,"]),
             CSV, needles=("line 2", "layer must be an integer")),
        Case("table-arabic-digit-layer", "PUT", "/v1/devices/t1/table", table_csv(["١,SEP_3,1,"]),
             CSV, needles=("line 2", "layer must be an integer")),
        Case("table-huge-layer", "PUT", "/v1/devices/t1/table", table_csv([f"{big},SEP_3,1,"]),
             CSV, needles=("line 2", "layer")),
        Case("table-huge-ms", "PUT", "/v1/devices/t1/table", table_csv([f"0,SEP_3,{big},"]),
             CSV, needles=("line 2", "median_ms")),
        Case("table-inf-ms", "PUT", "/v1/devices/t1/table", table_csv(["0,SEP_3,inf,"]), CSV,
             needles=("line 2", "median_ms")),
        Case("table-1e999-iqr", "PUT", "/v1/devices/t1/table", table_csv(["0,SEP_3,1,1e999"]),
             CSV, needles=("line 2", "iqr_ms")),
        Case("table-huge-field", "PUT", "/v1/devices/t1/table",
             table_csv(["0,SEP_3," + "1" * 200_000 + ","]), CSV, needles=("line 2",)),
        Case("table-unterminated-quote", "PUT", "/v1/devices/t1/table",
             table_csv(['0,"SEP_3,1,']), CSV, needles=("line",)),
        Case("table-many-columns", "PUT", "/v1/devices/t1/table", table_csv([",".join("1" * 10_000)]),
             CSV, needles=("line 2", "3 or 4 columns")),
        Case("table-many-errors", "PUT", "/v1/devices/t1/table",
             table_csv([f"{i},Conv_9,1," for i in range(5000)]), CSV, needles=("line 2",)),
        Case("table-only-header", "PUT", "/v1/devices/t1/table", HEADER, CSV,
             needles=("no layer,op rows",)),
        Case("table-not-utf8", "PUT", "/v1/devices/t1/table", b"layer,op\xff", CSV,
             needles=("not UTF-8",)),
        Case("table-json-iqr-list", "PUT", "/v1/devices/t1/table",
             '{"ops": {"0": {"SEP_3": 1}}, "iqr": {"0": [1]}}', JSON,
             needles=("iqr.0", "expected an object")),
        Case("table-json-iqr-string", "PUT", "/v1/devices/t1/table",
             '{"ops": {"0": {"SEP_3": 1}}, "iqr": "x"}', JSON, needles=("iqr",)),
        Case("table-json-ops-list", "PUT", "/v1/devices/t1/table", '{"ops": [1, 2]}', JSON,
             needles=("ops",)),
        Case("table-json-huge-int", "PUT", "/v1/devices/t1/table",
             '{"ops": {"0": {"SEP_3": ' + big + "}}}", JSON, needles=("ops.0.SEP_3", "digits")),
        Case("table-json-nan", "PUT", "/v1/devices/t1/table", '{"ops": {"0": {"SEP_3": NaN}}}',
             JSON, needles=("ops.0.SEP_3", "NaN")),
        Case("table-json-deep", "PUT", "/v1/devices/t1/table",
             '{"ops": ' + "[" * 10_000 + "]" * 10_000 + "}", JSON, needles=("nested deeper",)),
        Case("table-json-bool-ms", "PUT", "/v1/devices/t1/table", '{"ops": {"0": {"SEP_3": true}}}',
             JSON, needles=("ops.0.SEP_3", "median_ms")),
        Case("table-json-superscript-key", "PUT", "/v1/devices/t1/table",
             '{"ops": {"²": {"SEP_3": 1}}}', JSON, needles=("ops.²", "layer")),
        Case("table-json-array", "PUT", "/v1/devices/t1/table", "[1]", JSON,
             needles=("object with 'ops'",)),
        Case("table-yaml", "PUT", "/v1/devices/t1/table", "ops: {}", YAML, status=415),
        Case("table-shared-by-user", "PUT", "/v1/devices/t1/table?shared=true",
             table_csv(good_rows()), CSV, status=403, needles=("only an admin",)),
        Case("table-owner-by-user", "PUT", "/v1/devices/t1/table?owner=bob",
             table_csv(good_rows()), CSV, status=404),
        Case("table-shared-and-owner", "GET", "/v1/devices/t1/table?shared=true&owner=bob",
             user="root", needles=("query.owner",)),
        Case("table-share-by-user", "POST", "/v1/devices/alice-dsp/table/share?owner=alice",
             status=403, needles=("only an admin",)),
        Case("table-share-missing", "POST", "/v1/devices/nope/table/share?owner=alice",
             user="root", status=404),
        # correlate
        *[Case(f"correlate-{name}", "POST", "/v1/devices/correlate",
               '{"latencies": {"a": [' + lit + ', 1, 2], "b": [1, 2, 3]}}', JSON,
               needles=("latencies.a.0", "not a finite number"))
          for name, lit in (("nan", "NaN"), ("inf", "Infinity"), ("minus-inf", "-Infinity"),
                            ("1e999", "1e999"))],
        Case("correlate-huge-int", "POST", "/v1/devices/correlate",
             '{"latencies": {"a": [' + big + ', 1, 2], "b": [1, 2, 3]}}', JSON,
             needles=("latencies.a.0", "digits")),
        Case("correlate-math-text-png", "POST", "/v1/devices/correlate?format=png",
             json.dumps({"latencies": {"$a^{$": [1, 2, 3, 4], "$\\frac{$": [1, 2, 4, 3],
                                       "b": [1, 3, 2, 4]}}), JSON, status=200),
        Case("correlate-math-text-json", "POST", "/v1/devices/correlate",
             json.dumps({"latencies": {"$\\sqrt{$": [1, 2, 3], "b": [1, 2, 3]}}), JSON,
             status=200),
        Case("correlate-too-many-devices", "POST", "/v1/devices/correlate",
             json.dumps({"latencies": {f"d{i}": [1, 2, 3] for i in range(65)}}), JSON,
             needles=("latencies", "at most 64")),
        Case("correlate-long-name", "POST", "/v1/devices/correlate",
             json.dumps({"latencies": {"x" * 101: [1, 2, 3], "b": [1, 2, 3]}}), JSON,
             needles=("latencies",)),
        Case("correlate-too-many-archs", "POST", "/v1/devices/correlate",
             json.dumps({"latencies": {"a": [1] * 100_001, "b": [1, 2, 3]}}), JSON,
             needles=("latencies.a", "at most 100000")),
        Case("correlate-not-object", "POST", "/v1/devices/correlate", '{"latencies": [1, 2]}',
             JSON, needles=("latencies", "valid dictionary")),
        Case("correlate-threshold-string", "POST", "/v1/devices/correlate",
             '{"latencies": {"a": [1, 2, 3], "b": [1, 2, 3]}, "threshold": "high"}', JSON,
             needles=("threshold",)),
        Case("correlate-too-few", "POST", "/v1/devices/correlate",
             '{"latencies": {"a": [1, 2], "b": [1, 2]}}', JSON, status=(200, 422)),
        Case("correlate-yaml", "POST", "/v1/devices/correlate", "latencies: {}", YAML,
             status=415),
        Case("correlate-deep", "POST", "/v1/devices/correlate",
             '{"latencies": {"a": ' + "[" * 1000 + "]" * 1000 + "}}", JSON,
             needles=("latencies.a", "nested deeper")),
        Case("correlate-surrogate-name", "POST", "/v1/devices/correlate",
             '{"latencies": {"\\ud800": [1, 2, 3], "b": [1, 2, 3]}}', JSON,
             needles=("a key must be text",)),
        # paths and queries
        *[Case(f"prefix-{name}", "GET", f"/v1/searches/{{sid}}/artifacts?prefix={quote(p)}",
               needles=("query.prefix",))
          for name, p in (("dot", "."), ("dotdot", ".."), ("double-slash", "a//b"),
                          ("dot-part", "a/./b"), ("dotdot-part", "a/../b"), ("nul", "a\x00"),
                          ("unicode", "é"), ("space", "a b"))],
        Case("prefix-slash", "GET", "/v1/searches/{sid}/artifacts?prefix=/", status=200),
        Case("key-dotdot", "GET", "/v1/searches/{sid}/artifacts/a/%2e%2e/b",
             needles=("path.key", "invalid artifact key")),
        Case("key-double-slash", "GET", "/v1/searches/{sid}/artifacts/a//b",
             needles=("invalid artifact key",)),
        Case("key-unicode", "GET", "/v1/searches/{sid}/artifacts/%C3%A9", needles=("key",)),
        Case("search-id-upper", "GET", "/v1/searches/ABC", needles=("search_id", "pattern")),
        Case("search-id-long", "GET", "/v1/searches/" + "a" * 300, needles=("search_id",)),
        Case("search-id-nul", "GET", "/v1/searches/a%00b", needles=("search_id",)),
        Case("search-id-missing", "GET", "/v1/searches/nope-00000000", status=404,
             needles=("no search 'nope-00000000'",)),
        Case("limit-huge", "GET", f"/v1/searches?limit={big}", needles=("query.limit",)),
        Case("limit-float", "GET", "/v1/searches?limit=1e3", needles=("query.limit",)),
        Case("limit-nan", "GET", "/v1/searches?limit=NaN", needles=("query.limit",)),
        Case("state-bad", "GET", "/v1/searches?state=done", needles=("query.state",)),
        Case("cursor-slash", "GET", "/v1/searches?cursor=a%2Fb", needles=("query.cursor",)),
        Case("owner-by-user", "GET", "/v1/searches?owner=bob", status=403),
        Case("report-format", "GET", "/v1/searches/{sid}/report?format=xml",
             needles=("query.format",)),
        Case("purge-maybe", "DELETE", "/v1/searches/{sid}?purge=maybe", needles=("query.purge",)),
        Case("checksums-2", "GET", "/v1/searches/{sid}/artifacts?checksums=2",
             needles=("query.checksums",)),
        Case("device-filter-bad", "GET", "/v1/searches/{sid}/artifacts?device=CPU",
             needles=("query.device",)),
        Case("file-traversal", "GET", "/v1/files/a/%2e%2e/b?expires=1&sig=" + "0" * 64,
             status=422),
        Case("file-expires-huge", "GET", f"/v1/files/a?expires={big}&sig=" + "0" * 64,
             needles=("query.expires",)),
        Case("table-name-bad", "PUT", "/v1/devices/Bad_Name/table", table_csv(good_rows()), CSV,
             needles=("path.name", "pattern")),
        Case("method-not-allowed", "PATCH", "/v1/searches/{sid}", status=405),
        Case("unknown-route", "GET", "/v1/nothing", status=404),
        # the operator's limits (the live server runs with the defaults)
        Case("limit-supernet-iterations", "POST", "/v1/searches",
             spec(supernet={"iterations": 10**9}), JSON,
             needles=("supernet.iterations", "1,000,000,000", "limit is 1,000,000")),
        Case("limit-retrain-iterations", "POST", "/v1/searches", spec(retrain={"iterations": 2_000_000}),
             JSON, needles=("retrain.iterations", "limit is 1,000,000")),
        Case("limit-stage2-iterations", "POST", "/v1/searches",
             spec(strategy="hurricane", hurricane={"stage2_iterations": 5_000_000}), JSON,
             needles=("hurricane.stage2_iterations", "limit is 1,000,000")),
        Case("limit-proxyless-iterations", "POST", "/v1/searches",
             spec(strategy="proxyless", proxyless={"iterations": 10**9}), JSON,
             needles=("proxyless.iterations", "limit is 1,000,000")),
        Case("limit-batch", "POST", "/v1/searches", spec(supernet={"batch_size": 10**6}), JSON,
             needles=("supernet.batch_size", "limit is 4,096")),
        Case("limit-bn-batch", "POST", "/v1/searches", spec(evolution={"bn_batch_size": 8192}),
             JSON, needles=("evolution.bn_batch_size", "limit is 4,096")),
        Case("limit-world", "POST", "/v1/searches",
             spec(training={"nodes": 16, "processes_per_node": 8}, supernet={"batch_size": 128},
                  retrain={"batch_size": 128}), JSON,
             needles=("training", "training.nodes × training.processes_per_node", "limit is 64")),
        Case("limit-world-max", "POST", "/v1/searches",
             spec(training={"nodes": 256, "processes_per_node": 64},
                  supernet={"batch_size": 16384}, retrain={"batch_size": 16384}), JSON,
             needles=("training", "limit is 64", "supernet.batch_size")),
        Case("limit-population", "POST", "/v1/searches",
             spec(evolution={"population": 10**6, "iterations": 20}), JSON,
             needles=("evolution", "population × evolution.iterations", "limit is 100,000")),
        Case("limit-input-layers", "POST", "/v1/searches",
             spec(backbone={"input_size": 1024, "layers_per_stage": [4, 4, 8, 4]}), JSON,
             needles=("backbone", "input_size × layers", "20,480", "limit is 16,384")),
        Case("limit-predictor", "POST", "/v1/searches", spec(predictor={"samples": 50_000}), JSON,
             needles=("predictor.samples", "limit is 2,000")),
        Case("limit-one-proxy", "POST", "/v1/searches",
             spec(devices=[{"name": "cpu", "budget_fraction": 0.5},
                           {"name": "cpu-ort", "budget_fraction": 0.5, "proxy": "cpu"}],
                  one_proxy={"samples": 5000}), JSON, needles=("one_proxy.samples", "2,000")),
        Case("limit-several", "POST", "/v1/searches",
             spec(supernet={"iterations": 10**9, "batch_size": 10**5}), JSON,
             needles=("supernet.iterations", "supernet.batch_size")),
        # data sources
        Case("source-etc", "POST", "/v1/searches",
             spec(dataset={"name": "imagefolder", "path": "/etc"}), JSON,
             needles=("dataset.path", "outside", f"{data_root}/shared", f"{data_root}/users/alice",
                      "s3://datasets")),
        Case("source-dotdot", "POST", "/v1/searches",
             spec(dataset={"name": "imagefolder", "path": f"{data_root}/shared/../../etc"}), JSON,
             needles=("dataset.path", "'..'")),
        Case("source-relative", "POST", "/v1/searches",
             spec(dataset={"name": "imagefolder", "path": "data/shared"}), JSON,
             needles=("dataset.path", "not an absolute directory")),
        Case("source-control", "POST", "/v1/searches",
             spec(dataset={"name": "imagefolder", "path": f"{data_root}/shared/a\nb"}), JSON,
             needles=("dataset.path", "control character")),
        Case("source-cifar-outside", "POST", "/v1/searches",
             spec(dataset={"name": "cifar10", "path": "/tmp/cifar-10-batches-py"}), JSON,
             needles=("dataset.path", "outside")),
        Case("source-other-users-dir", "POST", "/v1/searches",
             spec(dataset={"name": "imagefolder", "path": f"{data_root}/users/bob/photos"}), JSON,
             needles=("dataset.path", f"{data_root}/users/alice")),
        Case("source-bucket-not-allowed", "POST", "/v1/searches",
             spec(dataset={"name": "packed", "path": "s3://hurricane-live/runs"}), JSON,
             needles=("dataset.path", "s3://datasets")),
        Case("source-bucket-missing", "POST", "/v1/searches",
             spec(dataset={"name": "packed", "path": "s3://datasets/set"}), JSON,
             needles=("dataset.path", "no bucket 'datasets'")),
        Case("source-bucket-dotdot", "POST", "/v1/searches",
             spec(dataset={"name": "packed", "path": "s3://datasets/../hurricane-live"}), JSON,
             needles=("dataset.path", "'..'")),
        Case("source-file-scheme", "POST", "/v1/searches",
             spec(dataset={"name": "packed", "path": "file:///etc"}), JSON,
             needles=("dataset", "file:// is not a source")),
        # other users' things: 404 like things that do not exist, nothing learnt
        *[Case(f"tenant-{m.lower()}-{name}", m, p.replace("{sid}", "{bob_sid}"), status=404,
               needles=("{bob_sid}",))
          for m, name, p in (("GET", "view", "/v1/searches/{sid}"),
                             ("GET", "artifacts", "/v1/searches/{sid}/artifacts"),
                             ("GET", "artifact", "/v1/searches/{sid}/artifacts/spec.json"),
                             ("GET", "events", "/v1/searches/{sid}/events"),
                             ("GET", "report", "/v1/searches/{sid}/report"),
                             ("DELETE", "cancel", "/v1/searches/{sid}"),
                             ("DELETE", "purge", "/v1/searches/{sid}?purge=true"),
                             ("POST", "resume", "/v1/searches/{sid}/resume"))],
        Case("tenant-table-get", "GET", "/v1/devices/bob-dsp/table", status=404),
        Case("tenant-table-delete", "DELETE", "/v1/devices/bob-dsp/table", status=404),
        Case("tenant-table-owner", "GET", "/v1/devices/bob-dsp/table?owner=bob", status=404),
        Case("tenant-table-use", "POST", "/v1/searches",
             spec(devices=[{"name": "bob-dsp", "table": "imported", "budget_fraction": 0.5}]),
             JSON, needles=("devices.0.table", "no table is imported for device 'bob-dsp'")),
        # authentication comes first; bodies over the limit never get read
        Case("anon-bad-body", "POST", "/v1/searches", "[" * 1000, JSON, status=401, user=None),
        Case("anon-table", "PUT", "/v1/devices/t1/table", "garbage", CSV, status=401, user=None),
        Case("anon-correlate", "POST", "/v1/devices/correlate", '{"latencies": NaN}', JSON,
             status=401, user=None),
        Case("anon-list", "GET", "/v1/searches", status=401, user=None),
        Case("bad-token", "GET", "/v1/searches", headers={"Authorization": "Bearer hur_nope"},
             status=401, user=None),
        Case("basic-auth", "GET", "/v1/searches", headers={"Authorization": "Basic YTpi"},
             status=401, user=None),
        Case("token-unicode", "GET", "/v1/searches",
             headers={"Authorization": "Bearer tok\u00e9n".encode()},
             status=401, user=None),
        Case("declared-too-long-spec", "POST", "/v1/searches", "{}",
             {**JSON, "Content-Length": str(2 << 20)}, status=413, user=None),
        Case("declared-too-long-correlate", "POST", "/v1/devices/correlate", "{}",
             {**JSON, "Content-Length": str(2 << 20)}, status=413),
        Case("declared-too-long-get", "GET", "/v1/searches", "{}",
             {"Content-Length": str(50 << 20)}, status=413),
        Case("declared-too-long-table", "PUT", "/v1/devices/t1/table", "x",
             {**CSV, "Content-Length": str(11 << 20)}, status=413),
        Case("content-length-garbage", "POST", "/v1/searches", "{}",
             {**JSON, "Content-Length": "12a"}, status=400),
    ]
    return cases


# ----- generated from the routes --------------------------------------------------------

VALID = {"search_id": "{sid}", "key": "spec.json", "expires": "1", "sig": "0" * 64,
         "owner": "alice"}
HOSTILE_PARAMS = ["", "\x00", "../../etc/passwd", "é" * 300, "1e999", "-1", "9" * 400, "NaN",
                  "$\\frac{", "%ff"]


def route_cases(doc: dict[str, Any]) -> list[Case]:
    """Every parameter of every operation (path, query) with each hostile value: 4xx naming the
    parameter, or a 2xx where the value happens to be valid; never a 5xx."""
    cases: list[Case] = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = [p for p in op.get("parameters", []) if p["in"] in ("path", "query")]
            if path.endswith("/events"):
                continue  # a live stream: covered with ids that do not resolve (above)
            for p in params:
                for i, value in enumerate(HOSTILE_PARAMS):
                    if p["in"] == "path" and value in ("", "../../etc/passwd"):
                        continue  # another route, not this parameter
                    url = path
                    query = ""
                    if p["in"] == "path":
                        url = url.replace("{" + p["name"] + "}", quote(value, safe=""))
                    else:
                        query = f"?{p['name']}={quote(value, safe='')}"
                    if p["in"] == "path":
                        query = ""
                    for other in params:  # the other parameters: valid (ours, or absent)
                        if other is p:
                            continue
                        if other["in"] == "path":
                            url = url.replace("{" + other["name"] + "}", VALID.get(
                                other["name"], "route-dsp"))
                        elif other.get("required"):
                            query += ("&" if query else "?") + \
                                f"{other['name']}={VALID[other['name']]}"
                    body, headers = None, {}
                    if method == "put":
                        body, headers = table_csv(good_rows()), CSV
                    elif path.endswith("/adapt"):  # a valid request: the parameter is the test
                        body, headers = json.dumps({"ops": OPS, "num_layers": 5, "pick": 3}), JSON
                    cases.append(Case(f"route-{method}-{path}-{p['name']}-{i}", method.upper(),
                                      url + query, body, headers, status=0,
                                      needles=(p["name"],)))
    return cases


# ----- generated from the spec schema -----------------------------------------------------

def spec_leaves() -> list[tuple[tuple[str | int, ...], str]]:
    schema = SearchSpec.model_json_schema()
    defs = schema["$defs"]
    out: list[tuple[tuple[str | int, ...], str]] = []

    def walk(node: dict[str, Any], path: tuple[str | int, ...]) -> None:
        if "$ref" in node:
            walk(defs[node["$ref"].split("/")[-1]], path)
        elif "anyOf" in node:
            for a in node["anyOf"]:
                if a.get("type") != "null":
                    walk(a, path)
                    return
        elif node.get("type") == "object" and "properties" in node:
            for k, v in node["properties"].items():
                walk(v, (*path, k))
        elif node.get("type") == "array":
            walk(node.get("items") or node.get("prefixItems", [{}])[0], (*path, 0))
        else:
            out.append((path, str(node.get("type", "string"))))

    walk(schema, ())
    return out


BAD_VALUE: dict[str, Any] = {"integer": 2**63, "number": "1e999", "string": "\\ud800",
                             "boolean": "maybe"}


def with_value(path: tuple[str | int, ...], literal: str) -> str:
    """The tiny spec with the field at ``path`` set to a JSON literal."""
    marker = "__HOSTILE__"
    doc: Any = copy.deepcopy(tiny_spec_dict())  # its lists are shared module constants
    node = doc
    for i, key in enumerate(path):
        last = i == len(path) - 1
        if isinstance(key, int):
            while len(node) <= key:
                node.append({})
            if last:
                node[key] = marker
            node = node[key]
        else:
            if last:
                node[key] = marker
            else:
                nxt = path[i + 1]
                node = node.setdefault(key, [] if isinstance(nxt, int) else {})
                if isinstance(nxt, int) and not isinstance(node, list):
                    node = [node]
    return json.dumps(doc).replace(f'"{marker}"', literal)


def schema_cases() -> list[Case]:
    cases = []
    for path, kind in spec_leaves():
        value = BAD_VALUE[kind]
        literal = value if isinstance(value, str) and kind == "number" else (
            f'"{value}"' if isinstance(value, str) else json.dumps(value))
        dotted = ".".join(str(p) for p in path)
        cases.append(Case(f"spec-{dotted}-{kind}", "POST", "/v1/searches",
                          with_value(path, literal), JSON, needles=(dotted,)))
        if kind in ("integer", "number"):  # a string where a number goes
            cases.append(Case(f"spec-{dotted}-text", "POST", "/v1/searches",
                              with_value(path, '"many"'), JSON, needles=(dotted,)))
    return cases


# ----- running them ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(live_api: ApiServer) -> Iterator[dict[str, str]]:
    """Alice's and Bob's searches and tables on the live server (read-only for the cases)."""
    out: dict[str, str] = {}
    with httpx.Client(base_url=live_api.url, timeout=60) as c:
        for user in ("alice", "bob"):
            r = c.put(f"/v1/devices/{user}-dsp/table", content=table_csv(good_rows()),
                      headers={**CSV, **live_api.headers(user)})
            assert r.status_code == 201, r.text
            # a second known device (another ranking): a prior for POST /v1/devices/{name}/adapt
            other = [f"{i},{op},{0.2 * (i + 1) + (len(OPS) - j) * 0.03:.3f},"
                     for i in range(5) for j, op in enumerate(OPS)]
            r = c.put(f"/v1/devices/{user}-npu/table", content=table_csv(other),
                      headers={**CSV, **live_api.headers(user)})
            assert r.status_code == 201, r.text
            r = c.post("/v1/searches", json=tiny_spec_dict(name=f"{user}-s"),
                       headers=live_api.headers(user))
            assert r.status_code == 201, r.text
            out[f"{user}_sid"] = r.json()["search_id"]
    out["sid"] = out["alice_sid"]
    yield out
    print(f"\nstatus codes of the hostile requests: {dict(sorted(SEEN.items()))}")


def send(live_api: ApiServer, world: dict[str, str], case: Case) -> httpx.Response:
    fill: Callable[[str], str] = lambda s: s.replace("{sid}", world["sid"]).replace(  # noqa: E731
        "{bob_sid}", world["bob_sid"])
    headers = {**live_api.headers(case.user), **case.headers}
    if "Content-Length" in case.headers:  # a declared length the body does not have
        r = raw_request(live_api, case.method, fill(case.path), headers, case.body)
    else:
        with httpx.Client(base_url=live_api.url, timeout=120) as c:
            try:
                r = c.request(case.method, fill(case.path), content=case.body, headers=headers)
            except httpx.RemoteProtocolError:
                pytest.fail(f"{case.id}: the server dropped the connection")
    SEEN[r.status_code] += 1
    if r.status_code >= 200 and r.status_code < 300 and case.method == "POST" and \
            case.path == "/v1/searches":
        c2 = httpx.Client(base_url=live_api.url, timeout=60)  # keep alice under her limit
        c2.delete(f"/v1/searches/{r.json()['search_id']}", headers=live_api.headers(case.user))
        c2.close()
    return r


def raw_request(live_api: ApiServer, method: str, path: str, headers: dict[str, Any],
                body: str | bytes | None) -> httpx.Response:
    """What an HTTP client library refuses to send: a Content-Length the body does not have.
    The server must answer from the headers alone (the rest of the body never comes)."""
    data = body.encode() if isinstance(body, str) else body or b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{live_api.port}",
             "Connection: close"]
    lines += [f"{k}: {v.decode() if isinstance(v, bytes) else v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", live_api.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    hdrs = [tuple(h.decode("latin-1").split(": ", 1)) for h in head.split(b"\r\n")[1:]]
    return httpx.Response(status, headers=hdrs, content=rest)


def check(live_api: ApiServer, world: dict[str, str], cases: list[Case]) -> list[str]:
    problems = []
    for case in cases:
        r = send(live_api, world, case)
        text = detail_text(r)
        needles = [n.replace("{bob_sid}", world["bob_sid"]) for n in case.needles]
        if r.status_code >= 500:
            problems.append(f"{case.id}: {r.status_code} {r.text[:300]}")
        elif case.status == 0:  # generated: a 4xx naming the parameter, or a valid value
            if r.status_code == 422 and not any(n in text for n in needles):
                problems.append(f"{case.id}: 422 without {needles}: {text[:300]}")
        elif r.status_code not in (case.status if isinstance(case.status, tuple)
                                   else (case.status,)):
            problems.append(f"{case.id}: {r.status_code}, expected {case.status}: {text[:300]}")
        else:
            missing = [n for n in needles if n not in text]
            if missing:
                problems.append(f"{case.id}: {missing} not in {text[:400]}")
        if r.status_code == 422:
            assert r.headers["content-type"] == "application/json"
    if problems:
        problems.append(f"server log: {live_api.log_tail(2000)}")
    return problems


def test_there_are_at_least_150_hostile_requests(live_api: ApiServer) -> None:
    doc = httpx.get(f"{live_api.url}/openapi.json").json()
    hand, routes, fields = (hand_written(str(live_api.data)), route_cases(doc), schema_cases())
    ids = [c.id for c in hand + routes + fields]
    assert len(ids) == len(set(ids))
    assert len(hand) >= 150 and len(routes) >= 60 and len(fields) >= 150, (
        len(hand), len(routes), len(fields))


def test_hand_written_hostile_requests_get_a_4xx_naming_the_field(live_api: ApiServer,
                                                                  world: dict[str, str]) -> None:
    before = SEEN[201]
    problems = check(live_api, world, hand_written(str(live_api.data)))
    assert not problems, "\n".join(problems)
    assert SEEN[201] - before == 3  # the three valid-after-all inputs above, and nothing else
    # a bucket a user named was never created, and nothing of the refused requests was stored
    from minio import Minio

    minio = Minio(live_api.moto.endpoint.removeprefix("http://"), access_key=live_api.ACCESS,
                  secret_key=live_api.SECRET, secure=False)
    assert not minio.bucket_exists("datasets")


def test_every_route_parameter_with_hostile_values(live_api: ApiServer,
                                                   world: dict[str, str]) -> None:
    doc = httpx.get(f"{live_api.url}/openapi.json").json()
    cases = route_cases(doc)
    problems = check(live_api, world, cases)
    assert not problems, "\n".join(problems)


def test_every_spec_field_with_a_value_it_cannot_take(live_api: ApiServer,
                                                      world: dict[str, str]) -> None:
    problems = check(live_api, world, schema_cases())
    assert not problems, "\n".join(problems)


def test_a_streamed_body_over_the_limit_is_cut_off_with_413(live_api: ApiServer) -> None:
    """No Content-Length (chunked): the server stops reading at the limit and answers 413;
    without a token it answers 401 before reading anything."""
    sent = {"bytes": 0}

    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 4 MiB offered, 1 MiB allowed
            sent["bytes"] += 1 << 16
            yield b" " * (1 << 16)

    for path, user, status in (("/v1/searches", "alice", 413),
                               ("/v1/devices/correlate", "alice", 413),
                               ("/v1/searches", None, 401)):
        sent["bytes"] = 0
        with httpx.Client(base_url=live_api.url, timeout=60) as c:
            try:
                r = c.post(path, content=chunks(), headers={**JSON, **live_api.headers(user)})
            except (httpx.RemoteProtocolError, httpx.WriteError):
                pytest.fail(f"{path}: the connection was dropped instead of answered")
        SEEN[r.status_code] += 1
        assert r.status_code == status, r.text
        if status == 413:
            assert "limit of 1048576 bytes" in r.json()["detail"]
