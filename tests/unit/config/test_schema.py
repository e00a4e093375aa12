"""The schema declares each config key once (its type, default and how it is read): the
declarations are ones the loader can carry out, and enumerations load as their enums."""

import dataclasses
import inspect

import pytest
from tests.problems import problems as config_problems

from routeflow.config import schema
from routeflow.config.fields import Fields
from routeflow.config.loader import parse_config
from routeflow.config.schema import KEY, Engine, RoutingPlane

SECTIONS = (schema.Config, schema.RfvsConfig, schema.Limits, schema.VmConfig, schema.VmInterface, schema.Trunk)
DECLARED = [(cls, f) for cls in SECTIONS for f in dataclasses.fields(cls) if KEY in f.metadata]
VM = {"name": "rA", "dpid": 1, "interfaces": [{"name": "eth1", "port": 1}]}


@pytest.mark.parametrize(("cls", "declared"), DECLARED, ids=lambda x: getattr(x, "name", getattr(x, "__name__", "")))
def test_each_declaration_names_an_accessor_its_arguments_fit(cls, declared):
    read = declared.metadata[KEY]
    accessor = getattr(Fields, read.accessor)
    extra = {} if declared.default is dataclasses.MISSING else {"default": declared.default}
    inspect.signature(accessor).bind(None, declared.name, **read.args, **extra)  # raises if they do not fit


def test_enumerations_load_as_their_members_and_are_refused_by_their_values():
    vm = parse_config({"vms": [{**VM, "engine": "bird", "routing_plane": "virtual"}]}).vms[0]
    assert vm.engine is Engine.BIRD and vm.routing_plane is RoutingPlane.VIRTUAL
    default = parse_config({"vms": [VM]}).vms[0]
    assert default.engine is Engine.FRR and default.routing_plane is RoutingPlane.PHYSICAL
    found = config_problems(parse_config, {"vms": [{**VM, "engine": "quagga", "routing_plane": "astral"}]}, "c.yaml")
    assert found == {"vms[0].engine": "'quagga' is not one of frr, bird, none",
                     "vms[0].routing_plane": "'astral' is not one of physical, virtual"}


def test_an_enumeration_is_its_value_in_messages_and_json():
    assert f"{Engine.NONE}" == "none" and Engine.NONE == "none"
    found = config_problems(parse_config, {"vms": [{**VM, "engine": "none", "daemons": ["ospfd"]}]}, "c.yaml")
    assert found == {"vms[0].daemons": "only the frr engine runs daemons (engine is 'none')"}
