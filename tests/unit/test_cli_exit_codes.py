"""Every command keeps the README's exit codes: 0 success, 1 a check or an operation
failed, 2 invalid usage, config or topology, 3 server unreachable; a failure is one
line, never a traceback. Against a real RF-Server where one is needed."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from routeflow import harness
from routeflow.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, main
from routeflow.config.loader import parse_config
from routeflow.lab import network
from routeflow.model import PortDesc
from routeflow.protocol.messages import DatapathJoin, DatapathLeave
from routeflow.server.service import RFServer

CONFIG = {"manage_vms": False, "vms": [
    {"name": "rA", "dpid": 1, "engine": "none", "interfaces": [{"name": "eth1", "port": 1}]}]}
VALID_CONFIG = "vms:\n  - {name: rA, dpid: 1, engine: none, interfaces: [{name: eth1, port: 1}]}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real RF-Server on a Unix socket, its event loop in a thread; nothing else connected."""

    def __init__(self, tmp_path: Path) -> None:
        self.address = f"unix:{tmp_path / 'server.sock'}"
        self.keys = tmp_path / "keys"
        self.config = parse_config({**CONFIG, "listen": [self.address]})
        self.loop = asyncio.new_event_loop()
        self.server = RFServer(self.config, keys=self.keys)
        self.loop.run_until_complete(self.server.start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def options(self) -> list[str]:
        return ["--server", self.address, "--keys", str(self.keys)]

    def join(self, *dpids: int) -> None:
        """The controller connected, with datapaths ``dpids``, as the server's core sees it."""
        def joined() -> None:
            self.server.core.on_controller_up()
            for dpid in dpids:
                self.server.core.on_datapath_join(DatapathJoin(dpid, (PortDesc(1, "p1", "aa:00:00:00:00:01", True),)))
        self._in_loop(joined)

    def leave(self, dpid: int) -> None:
        self._in_loop(lambda: self.server.core.on_datapath_leave(DatapathLeave(dpid)))

    def _in_loop(self, work) -> None:
        async def run() -> None:
            work()
        asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def server(tmp_path):
    running = Server(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)``'s exit code (argparse's too), stdout and stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# --- status: 1 while the controller or a mirrored datapath is missing, the status still printed ------


def test_status_is_a_check_of_the_controller_and_every_mirrored_datapath(server, capsys):
    rfvs = server.config.rfvs.dpid
    code, out, err = run_main(["status", *server.options()], capsys)
    assert code == EXIT_FAILED
    assert "controller: NOT connected" in out and "RFVS rfvs" in out and "rA" in out  # all of it
    assert err == (f"routeflow: status: controller not connected; datapath 0x1 (rA) down; "
                   f"datapath {rfvs:#x} (RFVS rfvs) down\n")

    server.join(1)
    code, out, err = run_main(["status", "--json", *server.options()], capsys)
    assert code == EXIT_FAILED and err == ""
    assert json.loads(out)["problems"] == [f"datapath {rfvs:#x} (RFVS rfvs) down"]

    server.join(rfvs)
    code, out, err = run_main(["status", *server.options()], capsys)
    assert (code, err) == (EXIT_OK, "")
    code, out, _ = run_main(["status", "--json", *server.options()], capsys)
    assert code == EXIT_OK and json.loads(out)["problems"] == []

    server.leave(1)
    code, _, err = run_main(["status", *server.options()], capsys)
    assert code == EXIT_FAILED and err == "routeflow: status: datapath 0x1 (rA) down\n"


def test_status_exit_code_of_the_real_process(server):
    done = subprocess.run([sys.executable, "-m", "routeflow", "status", *server.options()],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == EXIT_FAILED and "controller: NOT connected" in done.stdout
    assert done.stderr.startswith("routeflow: status: controller not connected")


def test_verify_fails_when_a_vm_cannot_be_checked(server, capsys):
    server.join(1, server.config.rfvs.dpid)
    code, out, _ = run_main(["verify", "--json", *server.options()], capsys)
    assert code == EXIT_FAILED
    assert "rA: cannot read its FIB" in json.loads(out)["differences"][0]


# --- every command, every code that applies -----------------------------------------------------


@pytest.fixture
def files(tmp_path):
    """Paths the table below fills in: a valid and an invalid config, a file where a
    directory should be, an unreachable server, a taken port."""
    (tmp_path / "good.yaml").write_text(VALID_CONFIG)
    (tmp_path / "bad.yaml").write_text("vms: 3\n")
    (tmp_path / "afile").write_text("")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        yield {"good": str(tmp_path / "good.yaml"), "bad": str(tmp_path / "bad.yaml"),
               "under_a_file": str(tmp_path / "afile" / "keys"), "keys": str(tmp_path / "keys"),
               "nowhere": f"unix:{tmp_path / 'none.sock'}", "state": str(tmp_path / "lab.json"),
               "taken": str(squatter.getsockname()[1]),
               "taken_config": str(_taken_config(tmp_path, squatter.getsockname()[1]))}


def _taken_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "taken.yaml"
    path.write_text(f"manage_vms: false\nlisten: ['tcp:127.0.0.1:{port}']\n{VALID_CONFIG}")
    return path


CASES = {
    # what is tried: argv ({name}: from the files fixture), exit code
    "check a valid config": (["check", "{good}"], EXIT_OK),
    "check an invalid config": (["check", "{bad}"], EXIT_USAGE),
    "check without a file": (["check", "--topology"], EXIT_USAGE),
    "pki init": (["pki", "init", "{good}", "--keys", "{keys}"], EXIT_OK),
    "pki init, keys under a file": (["pki", "init", "{good}", "--keys", "{under_a_file}"], EXIT_FAILED),
    "pki init, invalid config": (["pki", "init", "{bad}", "--keys", "{keys}"], EXIT_USAGE),
    "pki list, none": (["pki", "list", "--keys", "{keys}"], EXIT_FAILED),
    "pki list --json, none": (["pki", "list", "--keys", "{keys}", "--json"], EXIT_FAILED),
    "status, no server": (["status", "--server", "{nowhere}"], EXIT_UNREACHABLE),
    "status, bad address": (["status", "--server", "nowhere"], EXIT_USAGE),
    "verify, no server": (["verify", "--server", "{nowhere}"], EXIT_UNREACHABLE),
    "verify, bad wait": (["verify", "--wait", "soon"], EXIT_USAGE),
    "lab up, invalid topology": (["lab", "up", "{bad}", "--state", "{state}"], EXIT_USAGE),
    "lab down, none up": (["lab", "down", "--state", "{state}"], EXIT_OK),
    "lab link, none up": (["lab", "link", "A-B", "down", "--state", "{state}"], EXIT_FAILED),
    "lab link, bad state": (["lab", "link", "A-B", "sideways"], EXIT_USAGE),
    "controller, port taken": (["controller", "--listen-port", "{taken}", "--server", "{nowhere}"], EXIT_FAILED),
    "controller, bad port": (["controller", "--listen-port", "66000"], EXIT_USAGE),
    "controller, bad host": (["controller", "--listen-host", "no.such.host.invalid"], EXIT_USAGE),
    "server, invalid config": (["server", "{bad}"], EXIT_USAGE),
    "server, port taken": (["server", "{taken_config}", "--keys", "{keys}"], EXIT_FAILED),
    "client, no key": (["client", "--vm", "rA", "--server", "{nowhere}", "--keys", "{keys}"], EXIT_USAGE),
    "vm shell, invalid config": (["vm", "rA", "shell", "--config", "{bad}"], EXIT_USAGE),
    "vm shell, no such VM": (["vm", "rZ", "shell", "--config", "{good}"], EXIT_FAILED),
    "vm shell, engine none": (["vm", "rA", "shell", "--config", "{good}"], EXIT_FAILED),
    "vm shell, no server": (["vm", "rA", "shell", "--server", "{nowhere}"], EXIT_UNREACHABLE),
    "vm shell, bad address": (["vm", "rA", "shell", "--server", "nowhere"], EXIT_USAGE),
    "demo, no such example": (["demo", "rftest9"], EXIT_USAGE),
}


@pytest.mark.parametrize("argv, code", CASES.values(), ids=CASES.keys())
def test_exit_code(argv, code, files, capsys):
    got, out, err = run_main([arg.format(**files) for arg in argv], capsys)
    assert got == code, (out, err)
    assert "Traceback" not in out + err
    if code != EXIT_OK:
        assert err.strip() or out.strip(), "a failure says why"


@pytest.mark.parametrize("failure, code", [
    (network.LabError("cannot build the lab: already in use: bridge sA"), EXIT_FAILED),
    (OSError("ovs-vsctl: not found"), EXIT_FAILED),
])
def test_a_failed_lab_operation_is_1(failure, code, files, monkeypatch, capsys):
    def fail(*_args, **_kwargs):
        raise failure

    monkeypatch.setattr(network, "lab_up", fail)
    got, out, err = run_main(["lab", "up", files["good"], "--state", files["state"]], capsys)
    assert got == code and err == f"routeflow: {failure}\n" and out == ""


def test_demo_codes(monkeypatch, capsys):
    import routeflow.demo

    monkeypatch.setattr(harness, "stop_kept", lambda: False)
    assert run_main(["demo", "--stop"], capsys)[0] == EXIT_OK
    monkeypatch.setattr(routeflow.demo, "run_demo", lambda example, keep: 1)
    assert run_main(["demo", "rftest1"], capsys)[0] == EXIT_FAILED


def test_a_taken_openflow_port_is_one_line(files, capsys):
    code, out, err = run_main(["controller", "--listen-port", files["taken"], "--server", files["nowhere"]], capsys)
    assert code == EXIT_FAILED
    assert err == f"routeflow: cannot listen for OpenFlow on 127.0.0.1:{files['taken']}: Address already in use\n"


@pytest.mark.parametrize("argv, code", [
    (["status", "--json", "--server", "{nowhere}"], EXIT_UNREACHABLE),
    (["check", "{bad}"], EXIT_USAGE),
    (["controller", "--listen-port", "{taken}", "--server", "{nowhere}"], EXIT_FAILED),
    (["lab", "down", "--state", "{state}"], EXIT_OK),
])
def test_exit_codes_of_the_real_process(argv, code, files):
    done = subprocess.run([sys.executable, "-m", "routeflow", *(arg.format(**files) for arg in argv)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) <= 1


def test_the_traceback_is_there_for_whoever_asks_for_it(files):
    argv = [sys.executable, "-m", "routeflow", "-vv", "pki", "init", files["good"], "--keys", files["under_a_file"]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == EXIT_FAILED
    assert "the failure in full" in done.stderr and "Traceback" in done.stderr
    assert done.stderr.splitlines()[-1] == f"routeflow: [Errno 20] Not a directory: '{files['under_a_file']}'"
