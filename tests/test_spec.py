"""SearchSpec loading and its error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hurricane.spec import SearchSpec, SpecError, parse_spec, read_spec_file, spec_schema
from tests.conftest import tiny_spec_dict

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(p for p in EXAMPLES.glob("*.yaml")
                                         if not p.name.startswith("values-")  # Helm values
                                         and not p.name.endswith("-cr.yaml")),  # resources
                         ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    assert isinstance(read_spec_file(path), SearchSpec)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*-cr.yaml")), ids=lambda p: p.name)
def test_the_resource_examples_hold_valid_specs(path: Path) -> None:
    """A HurricaneSearch's spec is a search spec (the API server checks the CRD's schema,
    tests/test_crd_real.py)."""
    doc = yaml.safe_load(path.read_text())
    assert doc["kind"] == "HurricaneSearch"
    SearchSpec.model_validate(doc["spec"])


def test_yaml_and_json_load_the_same_spec(tmp_path: Path) -> None:
    d = tiny_spec_dict()
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(d))
    (tmp_path / "s.json").write_text(json.dumps(d))
    assert read_spec_file(tmp_path / "s.yaml") == read_spec_file(tmp_path / "s.json")


def test_defaults_follow_method_md() -> None:
    s = SearchSpec.model_validate({"dataset": {"name": "imagefolder", "path": "/data"},
                                   "devices": [{"name": "cpu", "latency_budget_ms": 310}]})
    assert s.backbone.layers_per_stage == (4, 4, 8, 4) and s.backbone.input_size == 224
    assert s.backbone.num_classes == 1000
    assert s.backbone.stage_channels == (64, 160, 320, 640)
    assert len(s.space.ops) == 32
    assert (s.supernet.lr, s.supernet.momentum, s.supernet.weight_decay) == (0.5, 0.9, 4e-5)
    assert (s.supernet.label_smoothing, s.supernet.batch_size) == (0.1, 1024)
    e = s.evolution
    assert (e.iterations, e.population, e.top_k, e.crossover, e.mutation, e.mutation_prob) == \
        (20, 50, 10, 25, 25, 0.1)


def _err(**overrides) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError) as info:
        parse_spec(tiny_spec_dict(**overrides))
    return str(info.value)


def test_unknown_op_names_field_and_allowed_values() -> None:
    msg = _err(space={"ops": ["SEP_3", "Conv_9"]})
    assert "space.ops" in msg and "Conv_9" in msg and "allowed: SEP_3" in msg


def test_unknown_dataset_lists_choices() -> None:
    msg = _err(dataset={"name": "imagenet"})
    assert "dataset.name" in msg and "'digits'" in msg and "'cifar10'" in msg


def test_supernet_sharing_and_shortcut_defaults_and_errors() -> None:
    s = parse_spec(tiny_spec_dict())
    assert s.supernet.sharing == "family" and s.backbone.downsample_shortcut is True
    msg = _err(supernet={"sharing": "all"})
    assert "supernet.sharing" in msg and "'none'" in msg and "'family'" in msg and "'layer'" in msg
    assert "backbone.downsample_shortcut" in _err(backbone={"downsample_shortcut": "maybe"})


def test_unknown_strategy_and_device() -> None:
    assert "strategy" in _err(strategy="darts") and "allowed: spos" in _err(strategy="darts")
    msg = _err(devices=[{"name": "tpu", "latency_budget_ms": 3}])
    assert "devices" in msg and "unknown device 'tpu'" in msg and "allowed: cpu" in msg


def test_budget_needs_exactly_one_form() -> None:
    assert "exactly one of" in _err(devices=[{"name": "cpu"}])
    assert "exactly one of" in _err(
        devices=[{"name": "cpu", "latency_budget_ms": 3, "budget_fraction": 0.5}])
    assert "devices.0.latency_budget_ms" in _err(devices=[{"name": "cpu",
                                                           "latency_budget_ms": -1}])


def test_backbone_checks() -> None:
    assert "backbone.num_classes" in _err(backbone={"num_classes": 7}) or \
        "num_classes must be 10" in _err(backbone={"num_classes": 7})
    assert "multiple of 32" in _err(backbone={"input_size": 40})
    assert "one channel count per stage" in _err(backbone={"layers_per_stage": [1, 1]})
    assert "increase strictly" in _err(backbone={"stage_channels": [16, 16, 32, 48]})


def test_unknown_field_is_rejected_by_name() -> None:
    msg = _err(supernet={"iters": 5})
    assert "supernet.iters" in msg and "Extra inputs are not permitted" in msg


def test_dataset_path_required_for_cifar() -> None:
    assert "needs 'path'" in _err(dataset={"name": "cifar10"})


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        read_spec_file(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SpecError, match="mapping of fields"):
        read_spec_file(tmp_path / "list.yaml")
    with pytest.raises(SpecError, match="cannot read spec"):
        read_spec_file(tmp_path / "missing.yaml")


def test_schema_describes_fields() -> None:
    schema = spec_schema()
    assert {"dataset", "backbone", "space", "devices", "strategy", "seed"} <= set(
        schema["properties"])
    assert "DatasetSpec" in schema["$defs"]


def test_a_known_dataset_sets_the_class_count_unless_given() -> None:
    from hurricane.spec import SearchSpec, SpecError, parse_spec

    assert parse_spec({}).backbone.num_classes == 10  # digits by default
    assert SearchSpec().backbone.num_classes == 10
    assert parse_spec({"backbone": {"input_size": 64}}).backbone.num_classes == 10
    with pytest.raises(SpecError, match=r"backbone\.num_classes must be 10 for dataset 'digits'"):
        parse_spec({"backbone": {"num_classes": 7}})
    folder = parse_spec({"dataset": {"name": "imagefolder", "path": "/data/x"}})
    assert folder.backbone.num_classes == 1000  # unknown count: the ImageNet default stays


@pytest.mark.parametrize(("training", "over", "words"), [
    ({"processes_per_node": 3}, {}, "supernet.batch_size (32) must be a multiple of the training "
                                    "world size 3 (training.nodes 1 × training.processes_per_node 3)"),
    ({"processes_per_node": 2}, {"retrain": {"batch_size": 33}}, "retrain.batch_size (33)"),
    ({"nodes": 2}, {"strategy": "proxyless"}, "strategy proxyless trains in one process"),
    ({"device": "cpu", "bf16": True}, {}, "training.bf16 and training.channels_last are CUDA"),
    ({"processes_per_node": 0}, {}, "training.processes_per_node"),
])
def test_training_topology_is_checked(training, over, words) -> None:  # type: ignore[no-untyped-def]
    from hurricane.spec import SpecError, parse_spec

    with pytest.raises(SpecError) as info:
        parse_spec(tiny_spec_dict(training=training, **over))
    assert words in str(info.value)
    ok = parse_spec(tiny_spec_dict(training={"processes_per_node": 2, "nodes": 2},
                                   supernet={"batch_size": 64}, retrain={"batch_size": 64}))
    assert ok.training.world_size == 4


def test_local_processes_run_one_node_only() -> None:
    from hurricane.runs.contract import JobInvalid, JobSpec
    from hurricane.runs.executor import ProcessExecutor

    ex = ProcessExecutor()
    assert ex.argv(JobSpec("s", "stage1", "/x", nprocs=2, max_restarts=3))[1:6] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "--max-restarts=3"]
    assert ex.argv(JobSpec("s", "stage1", "/x"))[1:4] == ["-m", "hurricane", "job"]
    with pytest.raises(JobInvalid, match="local processes run on one node"):
        ex.argv(JobSpec("s", "stage1", "/x", nodes=2))
