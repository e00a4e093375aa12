"""routeflow's benchmark suite (issue 4): ``python bench/run.py`` or ``make bench``.

One module per benchmark (:mod:`.table1`, :mod:`.install`, :mod:`.bgp`,
:mod:`.recovery`, :mod:`.faucet`), each a ``run(ctx) -> list[Row]``; the pure
parts (statistics, parsing, the table and JSON writer) live in :mod:`.stats`,
:mod:`.parse` and :mod:`.report` and have unit tests in ``tests/unit/bench``.
"""
