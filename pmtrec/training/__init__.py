"""The trainer, split by job (see :mod:`pmtrec.train` for the public entry point)."""
