"""One error type for bad input, so every stage reports it the same way."""


class ConfigError(ValueError):
    """Bad params, bad data or a bad file: the message names the key, file or line."""
