"""Errors that the trainer reports to the user as one line, without a traceback."""


class GanJaxError(Exception):
    """A problem with the user's input or environment; the message names the fix."""


class ConfigError(GanJaxError, ValueError):
    """An invalid configuration value or combination."""


class CheckpointError(GanJaxError):
    """No usable checkpoint, or one that does not fit the current configuration."""


class NonFiniteError(GanJaxError, FloatingPointError):
    """A loss or parameter became NaN or infinite."""


class FeatureError(GanJaxError, ValueError):
    """Features given to a metric have the wrong shape, too few rows, or non-finite values."""
