"""Errors raised for bad user input.

Every error a user can cause by giving the wrong file, shape or setting is a
:class:`SemisegInputError`. Its message is one line that names the problem, the
file (when there is one) and the fix, so the command line can print it as it is
and the plugin can show it in a notification.
"""

from __future__ import annotations


class SemisegInputError(ValueError):
    """Bad input from the user: a wrong shape, dtype, file or setting.

    Parameters
    ----------
    problem : str
        What is wrong, in the user's terms.
    fix : str, optional
        What the user can do about it.
    source : str, optional
        The file or layer the problem is in.
    """

    def __init__(self, problem: str, fix: str = "", source: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        self.source = source
        where = f"{source}: " if source else ""
        tail = f" Fix: {fix}" if fix else ""
        super().__init__(f"{where}{problem}.{tail}".replace("..", "."))


class ModelFileError(SemisegInputError):
    """A model file that is missing, corrupt, or made for another architecture."""
