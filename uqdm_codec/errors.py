"""The codec's own error types: every failure a user can cause ends in one of these."""


class UqdmError(Exception):
    """Base class: a one-line message meant for the user."""


class FormatError(UqdmError):
    """The bytes are not a valid .uqd file (foreign, corrupted or truncated header). `intact`:
    for damage found after the header, the length of the prefix before the damaged layer record
    or chunk (a file truncated there is valid), else None."""

    def __init__(self, message: str, intact: int | None = None) -> None:
        super().__init__(message)
        self.intact = intact


class ModelError(UqdmError):
    """The weights cannot be loaded, or do not match the file."""


class ImageError(UqdmError):
    """The input image cannot be read or is outside the supported range."""


class SyncError(UqdmError):
    """The decoder's arithmetic diverged from the encoder's, so the stream cannot be trusted."""
