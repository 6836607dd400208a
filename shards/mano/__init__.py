"""MANO and camera tools (see shards/mano/__main__.py for the commands)."""
