"""The implementation of the ``creds-core`` command line, one module per subcommand.

The entry point and the exit codes are in :mod:`creds_core.cli`; these modules are imported
only by the subcommand that needs them, so ``creds-core export`` (run by botocore as a
``credential_process`` on every refresh) starts as fast as possible.
"""
