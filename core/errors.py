"""The project's one error hierarchy (``InputError`` a ``ValueError``, exit 2; ``RunError`` a
``RuntimeError``, exit 1: ``tools.cli.command``), and the one way its messages name the caller's
parameters, ``param``: ``pass weights= or resume='auto'``. The commands show such a message as it
is and name their own flags where they parse them (an error extending another passes its pieces on,
``RunError(*exc.args, '; ...')``).
"""
from os import PathLike


class Solov2Error(Exception):
    """Base of every error this toolkit raises on purpose; its arguments are the pieces of its
    message (text and ``param``s), joined by ``str``."""

    def __str__(self) -> str:
        return ''.join(map(str, self.args))


class InputError(Solov2Error, ValueError):
    """Bad input or usage the user can fix; the message names the fix."""


class LimitError(InputError):
    """An input over a size limit the caller set (a picture's pixels): a service answers it
    413, not 400. Its first piece says what is over which limit, the rest how to raise it."""


class RunError(Solov2Error, RuntimeError):
    """The work itself failed; the message says what and why."""


def param(name: str, *values) -> str:
    """The parameter ``name`` in a message, with the value(s) to give it if any (several:
    alternatives): ``weights=``, ``backend='onnx'|'openvino'``, ``overwrite=True``."""
    return name + '=' + '|'.join(repr(str(v) if isinstance(v, PathLike) else v) for v in values)
