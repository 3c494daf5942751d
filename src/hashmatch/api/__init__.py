"""The HTTP service: routers that translate HTTP to the cores and back, nothing more.

- :mod:`.app`: the app factory; :mod:`.server`: uvicorn, workers and start-up
- :mod:`.deps`: typed dependencies (``StoreDep``, ``StateDep``, ``SettingsDep``, ...)
- :mod:`.matching`, :mod:`.lists`, :mod:`.shares`: the routes; :mod:`.models` their bodies
- :mod:`.asgi` (route table, middleware base), :mod:`.auth` with :mod:`.keycache` (the key
  gate, before any body), :mod:`.bodylimit`, :mod:`.ratelimit`, :mod:`.uploads`,
  :mod:`.metrics`
- :mod:`.errors`: domain errors -> HTTP status, in one place
"""
