"""User-facing notifications: the core's one-line messages, never a traceback."""

from __future__ import annotations

from napari.utils import notifications

from ..errors import SemisegInputError


def message_for(exc: BaseException, action: str) -> str:
    """One line for the user: input errors as they are, others with what failed.

    Parameters
    ----------
    exc : BaseException
        The error.
    action : str
        What was being done, e.g. ``"Training"``.

    Returns
    -------
    str
    """
    if isinstance(exc, SemisegInputError | FileExistsError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{action} failed: {text}"


def notify_error(exc: BaseException, action: str) -> None:
    """Show an error notification for ``exc``."""
    notifications.show_error(message_for(exc, action))


def notify_warning(text: str) -> None:
    """Show a warning notification."""
    notifications.show_warning(text)


def notify_info(text: str) -> None:
    """Show an information notification."""
    notifications.show_info(text)
