"""The project's own exception types.

Every error a user can cause (a bad file, a wrong shape, an unknown model, a
bad flag) is one of these. The message says what was wrong and what to do; the
CLI prints it on one line without a traceback.
"""


class SvertkaError(Exception):
    """Base class: a user-facing error with a one-line, actionable message."""


class SpecError(SvertkaError):
    """A network description that cannot be built (bad field, unknown layer type)."""


class ShapeError(SvertkaError):
    """An input shape a layer cannot take."""


class UnknownModelError(SvertkaError):
    """A model name that is not in the zoo."""


class DataError(SvertkaError):
    """A dataset file that is missing, corrupt, truncated or fails its checksum."""


class WeightsError(SvertkaError):
    """A state_dict or checkpoint that does not fit the model."""


class UsageError(SvertkaError):
    """A bad command-line flag or argument value."""


class WriteError(SvertkaError):
    """A file that cannot be written: a full disk, no permission, a missing folder."""
