"""The server half of field sync: plain Python over the engine (no HTTP): ops (push), pull, conflicts."""
