"""Unattended publication: the nightly job, its sources and inboxes, its schedule and its lock.

Built on `mutapub.mutations` only; the core never imports this package, and it never imports the
FTPS server: the two meet in the database and the publish tree.
"""
