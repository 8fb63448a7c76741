"""pytest plugin for gradcheck (placeholder until the plugin lands)."""
