"""OpenFlow 1.3 for routeflow: flows and groups to and from the wire, in two codecs.

- :mod:`.reference` builds and reads os-ken's message objects: exact, slow (about
  100 µs a flow each way), and what the tests compare the fast codec against;
- :mod:`.fast_encode` and :mod:`.fast_decode` write and read the same bytes
  directly, for the shapes routeflow uses, and hand anything else to the reference
  codec one entry at a time.

Both serialise a :class:`~routeflow.protocol.messages.TableMod` by one send plan
(:mod:`.order`) and write match fields by one table (:mod:`.fields`).
:mod:`.checks` proves a switch's entry safe for os-ken's parsers, and
:mod:`.guards` keeps os-ken's parsing of whatever a switch sends bounded.
"""
