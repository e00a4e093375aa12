"""``routeflow check``: what a config, a lab topology and their engine configs mean together.

It stands above :mod:`routeflow.config`, :mod:`routeflow.lab` and :mod:`routeflow.vnet` because
it reads all three: the config's own loader finds every syntax and schema error; this package
adds what only the lab or the engines themselves can tell (:mod:`.semantics` is the pure part,
:mod:`.engines` runs each engine's own parser, :mod:`.report` puts a check together).
"""
