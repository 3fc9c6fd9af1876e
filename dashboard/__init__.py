"""The Streamlit dashboard over the results store (``app.py``) and how to launch it."""
