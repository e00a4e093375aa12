"""routeflow's tests.

``unit/`` mirrors the package and needs no root, switch or network; ``integration/``
(marked ``integration``) runs the real stack. Helpers the tests share live here, one
module each, and no test module imports another:

- ``fakeswitch``: a switch table that forwards packets, and ``FakeSwitch``, which takes
  TableMods with OpenFlow 1.3 semantics; ``fakecontroller``: the controller in front of
  fake switches, for the server core.
- ``datapath``: rA, the VM whose datapath the compiler and server tests translate.
- ``fakeserver`` and ``fibmirror``: an RF-Server for the controller's and client's tests.
- ``problems``: what a config or topology error reports.
- ``processes``: commands and child processes; ``scenarios``: the real stack's scenarios.
- ``waiting``: ``until()``, waiting for a condition in asyncio tests (blocking waits use
  ``routeflow.harness.wait_for``).

Golden data: ``golden/`` (the controller's OVS capture is still in
``unit/controller/golden/``).
"""
