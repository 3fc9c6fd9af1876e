"""Prefect flows and DVC stages over the itpn library: params -> flows -> itpn -> results -> store."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # stages run here; params.yaml's config paths are relative to it
