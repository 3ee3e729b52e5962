"""Pure functions shared by training, inference and metrics (numpy only, no torch)."""
