"""The FTPS server: each subscriber pulls its own files from the publish tree; every transfer is recorded.

pyftpdlib's four roles, each in its own module: `server` (concurrency, listeners, shutdown), `handler`
(protocol and TLS, built per server by `build_handler`), `authorizer` (who you are, what you may do)
and `filesystem` (what you see). `tracking` carries records to the database off the I/O loop.
"""
