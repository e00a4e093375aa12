"""A flood of peers cannot flood the log."""

import logging

from routeflow import lograte


def test_a_template_passes_its_burst_then_says_how_many_it_suppressed(monkeypatch, caplog):
    now = [100.0]
    monkeypatch.setattr(lograte.time, "monotonic", lambda: now[0])
    log = logging.getLogger("routeflow.test-lograte")
    log.addFilter(lograte.RateLimit(burst=3, interval=10.0))
    with caplog.at_level(logging.INFO, logger="routeflow.test-lograte"):
        for n in range(1000):
            log.warning("closing peer %s: no hello", n)
            log.info("another template %d", n)
        assert [r.getMessage() for r in caplog.records if "closing" in r.getMessage()] == [
            "closing peer 0: no hello", "closing peer 1: no hello", "closing peer 2: no hello"]
        assert sum("another template" in r.getMessage() for r in caplog.records) == 3
        now[0] += 10.0
        log.warning("closing peer %s: no hello", "x")
    assert caplog.records[-1].getMessage() == "closing peer x: no hello [997 more like this suppressed in 10 s]"
