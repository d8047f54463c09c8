"""Table engines: the ways of computing a correction table (see :mod:`.base`)."""
