"""Per-board runtime defaults, one YAML file per board; packaged as data (read with importlib.resources)."""
