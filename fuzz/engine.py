"""Running one fuzz target: hypothesis generation, per-case limits, the failing input.

A :class:`Target` is a hypothesis strategy of inputs, a ``check`` that raises if
the code under test breaks its contract on one input, and a seed corpus of valid
inputs. :func:`run_target` runs the seeds, then generated cases, each within

* a *deadline* (hypothesis' ``deadline``: a case slower than it is a failure,
  shrunk like any other), and a hard limit (``SIGALRM``, 20 deadlines) that
  interrupts a case that never returns -- with an exception no ``except Exception``
  in the code under test can swallow;
* the process' memory cap (:func:`memory_cap`, ``RLIMIT_AS``): an allocation past it
  is a ``MemoryError`` in the case instead of the machine swapping.

A failure stops the target: hypothesis shrinks it and the smallest failing input is
returned (and can be written as a regression file, see ``fuzz/README.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import Flaky

FUZZ_DIR = Path(__file__).resolve().parent
if not os.getenv("HYPOTHESIS_STORAGE_DIRECTORY"):
    # Hypothesis caches (unicode tables, constants of the code) in fuzz/, not in the checkout's root.
    set_hypothesis_home_dir(str(FUZZ_DIR / ".hypothesis"))
REGRESSIONS = FUZZ_DIR / "regressions"
CRASHES = FUZZ_DIR / "crashes"

#: Per-case limit (hypothesis deadline), milliseconds.
DEADLINE_MS = 500.0
#: A case still running after this many deadlines is interrupted (it would never end).
HARD_LIMIT_DEADLINES = 20
#: Address-space cap of a fuzzing process.
MEMORY_CAP = 2 << 30
#: Generated cases per hypothesis run: the engine's bookkeeping grows with each case,
#: so a long campaign is many runs (each with its own random seed).
CHUNK = 20_000


class CaseHung(BaseException):
    """A case ran past the hard limit. A BaseException, so that no ``except Exception``
    in the code under test turns it into an ordinary outcome."""


class _BudgetSpent(BaseException):
    """The target's time budget is spent: stop generating (not a failure)."""


@dataclass(frozen=True)
class KnownIssue:
    """A failure found and reported but not fixed yet: the fuzzer counts the cases that
    hit it and goes on looking for others (unless run strictly); its regression input
    under fuzz/regressions/ is an xfail(strict=True) in tests/unit/test_fuzz_smoke.py."""

    name: str
    #: Where and why, for the report.
    description: str
    matches: Callable[[BaseException], bool]


@dataclass
class Target:
    """One fuzzed surface."""

    name: str
    #: What is fed to what, and what must hold.
    doc: str
    strategy: st.SearchStrategy[Any]
    #: Raises (anything) if the contract is broken for this input.
    check: Callable[[Any], None]
    #: Valid inputs (from tests/golden, examples/ and the encoders), run first.
    seeds: Callable[[], list[Any]]
    #: An input as the bytes of a regression file, and back.
    dump: Callable[[Any], bytes] = bytes
    load: Callable[[bytes], Any] = bytes
    #: An input as text for a report.
    show: Callable[[Any], str] = repr
    deadline_ms: float = DEADLINE_MS
    known: tuple[KnownIssue, ...] = ()


@dataclass
class Failure:
    target: str
    input: Any
    error: BaseException
    traceback: str
    #: True if hypothesis could not reproduce it on replay (timing, state).
    flaky: bool = False

    def describe(self, show: Callable[[Any], str], limit: int = 4000) -> str:
        text = show(self.input)
        if len(text) > limit:
            text = text[:limit] + f"... ({len(text)} characters)"
        flaky = " (did not reproduce on replay)" if self.flaky else ""
        return f"{self.target}: {type(self.error).__name__}{flaky}: {self.error}\ninput: {text}\n{self.traceback}"


@dataclass
class Result:
    target: str
    cases: int = 0
    seeds: int = 0
    seconds: float = 0.0
    failure: Failure | None = None
    #: Cases that hit each known issue.
    known: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.cases / self.seconds if self.seconds else 0.0


def _address_space() -> int:
    """Bytes of address space this process holds now (0 if unknown)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


@contextlib.contextmanager
def memory_cap(limit: int = MEMORY_CAP) -> Iterator[None]:
    """Lower this process' address-space soft limit to ``limit`` for the block (then restore it).

    A process already holding much of ``limit`` (a long pytest run) keeps 512 MiB of headroom."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = max(limit, _address_space() + (512 << 20))
    wanted = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft <= wanted:
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def _alarm_clock() -> Iterator[None]:
    """SIGALRM raises :class:`CaseHung` in the block; an outer timer (pytest-timeout's)
    gets what was left of it back afterwards."""

    def expire(_signum: int, _frame: object) -> None:
        raise CaseHung("case still running after the hard limit")

    previous_handler = signal.signal(signal.SIGALRM, expire)
    previous_delay, _ = signal.setitimer(signal.ITIMER_REAL, 0)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            signal.setitimer(signal.ITIMER_REAL, max(previous_delay - (time.monotonic() - started), 0.001))


def run_target(target: Target, cases: int, seconds: float | None = None, seed: int | None = None,
               deadline_ms: float | None = None, run_seeds: bool = True, strict: bool = False) -> Result:
    """Run the seeds and then ``cases`` generated cases (or until ``seconds`` pass, or a failure).

    A case that hits one of the target's known issues counts as such and passes, unless ``strict``."""
    deadline = deadline_ms if deadline_ms is not None else target.deadline_ms
    hard_limit = deadline * HARD_LIMIT_DEADLINES / 1000
    result = Result(target.name)
    last: list[Any] = [None]
    #: A case failed (or overran the deadline): hypothesis is shrinking it, let it finish.
    failing = [False]
    started = time.monotonic()
    stop_at = started + seconds if seconds else None

    def one(value: Any) -> None:
        last[0] = value
        result.cases += 1
        begun = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, hard_limit)
        try:
            target.check(value)
        except Exception as exc:
            issue = None if strict else next((k for k in target.known if k.matches(exc)), None)
            if issue is None:
                failing[0] = True
                raise
            result.known[issue.name] = result.known.get(issue.name, 0) + 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            if (time.perf_counter() - begun) * 1000 > deadline:
                failing[0] = True

    with _alarm_clock():
        if run_seeds:
            for value in target.seeds():
                begun = time.perf_counter()
                try:
                    one(value)
                    took = (time.perf_counter() - begun) * 1000
                    if took > deadline:
                        raise TimeoutError(f"seed took {took:.0f} ms, over the {deadline:g} ms deadline")
                except (Exception, CaseHung) as exc:
                    result.failure = Failure(target.name, value, exc, traceback.format_exc())
                    break
                result.seeds += 1
        chunk_index = 0
        while result.failure is None and result.cases - result.seeds < cases:
            if stop_at is not None and time.monotonic() >= stop_at:
                break
            remaining = cases - (result.cases - result.seeds)

            def body(value: Any) -> None:
                if stop_at is not None and time.monotonic() >= stop_at and not failing[0]:
                    raise _BudgetSpent
                one(value)

            test = settings(
                max_examples=min(remaining, CHUNK),
                deadline=timedelta(milliseconds=deadline),
                database=None,
                derandomize=False,
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
                verbosity=Verbosity.quiet,
                print_blob=False,
                phases=(Phase.explicit, Phase.generate, Phase.target, Phase.shrink),
            )(given(target.strategy)(body))
            if seed is not None:
                test = hypothesis_seed(seed + chunk_index)(test)
            chunk_index += 1
            before = result.cases
            try:
                test()
            except _BudgetSpent:
                break
            except (Exception, CaseHung) as exc:  # hypothesis re-raises the shrunk case's error last
                error: BaseException = exc
                flaky = isinstance(exc, Flaky)
                if flaky and isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                    error = exc.exceptions[0]
                elif flaky and exc.__cause__ is not None:
                    error = exc.__cause__
                result.failure = Failure(target.name, last[0], error, "".join(
                    traceback.format_exception(type(exc), exc, exc.__traceback__)), flaky)
            if result.cases == before:
                break  # the strategy has nothing left to give
    result.seconds = time.monotonic() - started
    return result


def crash_file(target: Target, failure: Failure) -> Path:
    """Write a failing input where ``fuzz/README.md`` says to pick it up from; return the path."""
    data = target.dump(failure.input)
    path = CRASHES / target.name / f"crash-{hashlib.sha1(data).hexdigest()[:12]}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def regression_files(name: str) -> list[Path]:
    """The regression inputs of target ``name`` (``fuzz/regressions/<name>/*.bin``)."""
    folder = REGRESSIONS / name
    return sorted(folder.glob("*.bin")) if folder.is_dir() else []


def replay(target: Target, path: Path, deadline_ms: float | None = None) -> None:
    """Check one regression input under the same limits as a fuzzed case; raise if it fails."""
    value = target.load(path.read_bytes())
    deadline = deadline_ms if deadline_ms is not None else target.deadline_ms
    with _alarm_clock():
        signal.setitimer(signal.ITIMER_REAL, deadline * HARD_LIMIT_DEADLINES / 1000)
        begun = time.perf_counter()
        try:
            target.check(value)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        took = (time.perf_counter() - begun) * 1000
    if took > deadline:
        raise TimeoutError(f"{path.name} took {took:.0f} ms, over the {deadline:g} ms deadline")
