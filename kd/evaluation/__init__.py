"""The benchmark (quality per model) and the speed run (every model timed together)."""
