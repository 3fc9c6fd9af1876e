"""Analyses of trained models: attention maps of a query token (Figure 6)."""
from .attention import QueryAttention, attention_figure, draw_attention, query_attention, query_token

__all__ = ["QueryAttention", "attention_figure", "draw_attention", "query_attention", "query_token"]
