"""``tooltool``: the command-line client, a drop-in for the legacy ``tooltool.py``.

Same commands, flags, manifest format and exit codes; fetches in parallel,
resumes, caches by digest and unpacks archives safely.
"""
