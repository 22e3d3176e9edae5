"""Adapters: the only code that talks to the outside world (disk, Google Cloud, HTTP)."""
