"""Pure domain logic: no I/O anywhere in this package."""
