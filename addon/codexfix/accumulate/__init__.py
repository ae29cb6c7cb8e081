"""The one reading of each protocol: the state its events build, for every consumer."""
