"""Prefect flows and DVC stages over the itpn library: params -> flows -> itpn -> results -> store."""
