"""pytest fixtures that run the REDCap emulator (being built)."""
