"""The project's one error hierarchy, and the one way its messages name the caller's
parameters. Library code raises these; the commands map them to exit codes in one place
(``tools.cli.command``):

- ``InputError`` (exit 2): something the user handed in or asked for cannot be used — a bad
  command line, a missing or malformed file, an output path that would overwrite an input,
  a checkpoint that does not fit the config. The message says what and how to fix it.
- ``RunError`` (exit 1): a failure while doing the work (an export that does not match the
  model, a non-finite loss, a data worker that died).

``InputError`` is a ``ValueError`` and ``RunError`` a ``RuntimeError``, so code that catches
the built-in kinds keeps working.

A message that names a parameter of the call holds it as a ``param`` among its pieces (an
error's arguments, a log call's arguments): ``InputError('pass ', param('weights'), ' or ',
param('resume', 'auto'))`` reads ``pass weights= or resume='auto'`` to a Python caller and
``pass --weights or --resume auto`` on a command line (``tools.cli.in_flags``). A param is a
``str`` of its Python words: an f-string or ``+`` around one reads well, but in Python words on
the command line too, so keep it a piece (an error extending another passes its pieces on,
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


class Param(str):
    """A parameter named in a message: its Python words, with ``name`` and the ``values`` to pass
    if any (several: alternatives) for the commands to show as a flag."""
    name: str
    values: tuple


def param(name: str, *values) -> Param:
    """The parameter ``name`` in a message, with the value(s) to give it if any: ``weights=``,
    ``backend='onnx'|'openvino'`` to a Python caller; ``--weights``, ``--backend onnx|openvino``
    on a command line (``True`` alone: the bare flag, ``--overwrite``)."""
    words = Param(name + '=' + '|'.join(repr(str(v) if isinstance(v, PathLike) else v) for v in values))
    words.name, words.values = name, values
    return words
