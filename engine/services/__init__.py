"""Services: the one place each write is coded, used by the HTTP routes (engine.api) and the
sync op handlers (sync.server) alike.

A route or an op handler parses its input, checks the caller's permission
(engine.auth.policy) and calls one service function; the service applies the object rules
(engine.services.access), owns the transaction and does every write. Services know nothing
of HTTP or of the sync protocol: they take plain values and raise the engine's typed errors
(engine.runtime.errors)."""
