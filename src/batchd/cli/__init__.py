"""The ``batchd`` command line."""
