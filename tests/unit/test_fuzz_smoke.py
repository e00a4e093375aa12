"""Each fuzz target briefly, and every regression input under fuzz/regressions/ (see fuzz/README.md).

``make fuzz`` runs the targets for real; here each runs its seed corpus and a few hundred
generated cases (a fixed hypothesis seed: the same cases every run), so ``make test``
catches a target that no longer runs, or a regression of what fuzzing found before.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fuzz import engine
from fuzz.targets import TARGETS, target

CASES = 200
SEED = 20261203
#: A target that takes longer than this stops early (the smoke run is a smoke run).
SECONDS = 15

#: Regression inputs (under fuzz/regressions/) of issues found and reported but not fixed
#: yet, with why they fail. They must keep failing (strict xfail): once the code is fixed,
#: remove the entry here and the KnownIssue in its target's module under fuzz/targets/, and the input stays a
#: regression test.
KNOWN_FAILURES: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _quiet():
    """The code under test logs every input it refuses."""
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize("name", list(TARGETS))
def test_target_runs_briefly_without_failure(name):
    fuzzed = target(name)
    with engine.memory_cap():
        result = engine.run_target(fuzzed, CASES, seconds=SECONDS, seed=SEED)
    assert result.failure is None, result.failure.describe(fuzzed.show)
    assert result.seeds > 0 and result.cases > result.seeds


def _regressions():
    for name in TARGETS:
        for path in engine.regression_files(name):
            key = f"{name}/{path.name}"
            marks = [pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[key])] if key in KNOWN_FAILURES else []
            yield pytest.param(path, id=key, marks=marks)


@pytest.mark.parametrize("path", list(_regressions()))
def test_regression_input(path: Path):
    """Checked strictly: a known issue's input fails here (hence its xfail)."""
    with engine.memory_cap():
        engine.replay(target(path.parent.name), path)


def test_known_failures_name_existing_inputs():
    for key in KNOWN_FAILURES:
        assert (engine.REGRESSIONS / key).is_file(), key
    stray = [p for p in engine.REGRESSIONS.glob("*/*.bin") if p.parent.name not in TARGETS]
    assert not stray, f"regression inputs of no target: {stray}"
