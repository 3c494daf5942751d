"""Matching: from a replica's live state to a caller's verdict. Reads no database on a query.

- :mod:`.state`: the live state, an index per signal type beside what each entry reports
  (:mod:`.entry_table`) and the lists as they are now
- :mod:`.follower`: keeps the state in step with the change log; :mod:`.snapshots` saves and
  loads it
- :mod:`.policy`: who may see, match and change a list; the threshold bounds
- :mod:`.verdict`: an item's hits -> one verdict (allow-list suppression, groups, bands)
- :mod:`.lookup`: a caller's question answered, for every front end
- :mod:`.probes`: recognising probes that would rebuild another organisation's hashes
- :mod:`.tokens`: match ids, self-authenticating, for platforms' outcome reports
- :mod:`.counts`: each hit stamped with its match id and counted (in memory, flushed)
"""
