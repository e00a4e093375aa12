"""Routing-engine plans: BIRD and FRR command lines, config files, pidfiles (no system access)."""

import subprocess
from pathlib import Path

import pytest

from routeflow.config.loader import load_config, parse_config
from routeflow.errors import ConfigError
from routeflow.vnet import VnetError, bird
from routeflow.vnet.engine import DaemonPlan, plan_engine
from routeflow.vnet.plan import plan_vnet

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
RUN = Path("/run/rf-test/vms")


def test_bird_vm_plan():
    plan = plan_vnet(load_config(EXAMPLES / "rftest2-bird" / "routeflow.yaml"), RUN)
    rb = plan.vm("rB")
    assert rb.engine == "bird" and rb.run_dir == RUN / "rB"
    assert rb.daemons == (DaemonPlan("bird", ("/usr/sbin/bird", "-c", str(RUN / "rB/bird.conf"),
                                              "-s", str(RUN / "rB/bird.ctl"), "-P", str(RUN / "rB/bird.pid")),
                                     RUN / "rB/bird.pid", RUN / "rB/bird.ctl"),)
    assert rb.engine_run.conf_file == RUN / "rB/bird.conf" and rb.engine_run.user is None
    conf = rb.engine_conf.splitlines()
    assert conf[1] == f'log "{RUN / "rB/bird.log"}" all;'
    # Nothing engine-specific is added beyond the log: router id comes from the user.
    assert "router id 10.255.0.2;" in conf
    assert sum("router id" in line for line in conf) == 1


def test_mixed_plan_has_both_engines():
    plan = plan_vnet(load_config(EXAMPLES / "rftest2-mixed" / "routeflow.yaml"), RUN)
    assert [(v.name, v.engine, [d.name for d in v.daemons]) for v in plan.vms] == [
        ("rA", "frr", ["zebra", "ospfd", "ospf6d"]), ("rB", "bird", ["bird"]), ("rC", "bird", ["bird"]),
        ("rD", "frr", ["zebra", "ospfd", "ospf6d"])]
    ra = plan.vm("rA")
    assert ra.engine_run.conf_file == RUN / "rA/frr.conf" and ra.engine_run.user == "frr"
    # zebra is ready once its API socket exists; the others once they wrote their pidfiles.
    assert [d.ready for d in ra.daemons] == [RUN / "rA/zserv.api", None, None]


def test_engine_plan_for_any_instance_name():
    frr_plan = plan_engine("frr", "L1", "router ospf\n", ("ospfd", "bgpd"), Path("/run/x"))
    assert frr_plan.run_dir == Path("/run/x/L1")
    assert [d.name for d in frr_plan.daemons] == ["zebra", "ospfd", "bgpd"]
    assert "hostname L1" in frr_plan.conf.splitlines()
    assert plan_engine("bird", "L2", "router id 1.1.1.1;", (), Path("/run/x")).daemons[0].argv[0] == "/usr/sbin/bird"
    assert plan_engine("none", "x", "", (), Path("/run/x")) is None


def test_bird_engine_takes_no_daemons():
    with pytest.raises(ConfigError) as info:
        parse_config({"vms": [{"name": "a", "dpid": 1, "engine": "bird", "daemons": ["ospfd"],
                               "interfaces": [{"name": "e", "port": 1}]}]}, "cfg.yaml")
    assert dict(info.value.problems) == {"vms[0].daemons": "only the frr engine runs daemons: BIRD runs as one "
                                                           "daemon, bird, which routeflow starts itself; remove daemons"}


@pytest.mark.parametrize("example", ["rftest2-bird", "rftest2-mixed"])
def test_example_bird_configs_parse(example, tmp_path):
    """Every BIRD config of the examples passes ``bird -p`` (parse only), if BIRD is installed."""
    if not bird.BIRD.exists():
        pytest.skip("BIRD is not installed")
    for vm in plan_vnet(load_config(EXAMPLES / example / "routeflow.yaml"), tmp_path).vms:
        if vm.engine == "bird":
            conf = tmp_path / f"{vm.name}.conf"
            conf.write_text(vm.engine_conf)
            done = subprocess.run([str(bird.BIRD), "-p", "-c", str(conf)], capture_output=True, text=True)
            assert done.returncode == 0, (vm.name, done.stderr)


def test_birdc_failure_is_reported(tmp_path):
    with pytest.raises(VnetError, match="rX"):
        bird.birdc("rX", "show protocols", run_root=tmp_path, timeout=5)
