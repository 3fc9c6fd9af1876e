"""The ``itpn`` command line: the pipeline's front door (flows, store, dashboard, benchmarks)."""
