"""Services around the experiments: settings, the results store and artifact storage."""
