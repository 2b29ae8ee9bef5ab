"""The pure core: records, wire formats, bridge, stages, policy, security.

Nothing here does I/O, reads a clock or touches a socket: every call takes
`now` and returns actions.  tests/unit/core/test_purity.py keeps it so.
"""
