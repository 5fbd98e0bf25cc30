"""The pipeline engine: rows flow through named steps."""
