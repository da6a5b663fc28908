"""The project's one error hierarchy, and the one way its messages name the caller's
parameters. Library code raises these; the commands map them to exit codes in one place
(``tools.cli.run_command``):

- ``InputError`` (exit 2): something the user handed in or asked for cannot be used — a bad
  command line, a missing or malformed file, an output path that would overwrite an input,
  a checkpoint that does not fit the config. The message says what and how to fix it.
- ``RunError`` (exit 1): a failure while doing the work (an export that does not match the
  model, a non-finite loss, a data worker that died).

``InputError`` is a ``ValueError`` and ``RunError`` a ``RuntimeError``, so code that catches
the built-in kinds keeps working.

A message that names a parameter of the call (``weights``, ``overrides``, ``resume``, ...)
holds it as a ``param`` among its pieces: an error's arguments are the pieces of its message,
``InputError('pass ', param('weights'), ' or ', param('resume', 'auto'))``, and a log call
takes one as an argument, ``logger.info('%s: starting anew', param('resume', 'auto'))``.
``str`` gives the caller's Python words (``pass weights= or resume='auto'``), the commands
the command-line words (``pass --weights or --resume auto``: ``tools.cli.in_flags``, also for
an error given to a log call as an argument). A param
is no ``str``: ``+`` or an f-string around one is a TypeError, never a message without its
flags; an error that extends another passes its pieces on (``RunError(*exc.args, '; ...')``).
"""
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Param:
    """A parameter named in a message, with the value(s) to pass if any (several: alternatives)."""
    name: str
    values: tuple

    def __str__(self) -> str:
        """``name=``, ``name='a'|'b'``."""
        return self.name + '=' + '|'.join(repr(str(v) if isinstance(v, PathLike) else v) for v in self.values)

    def __format__(self, spec: str) -> str:
        raise TypeError(f'{self!s} in an f-string or format() would lose its flag: make it a piece of the '
                        "error's message, or an argument of the log call (core.errors)")


def param(name: str, *values) -> Param:
    """The parameter ``name`` in a message, with the value(s) to give it if any: ``weights=``,
    ``backend='onnx'|'openvino'`` to a Python caller; ``--weights``, ``--backend onnx|openvino``
    on a command line (``True`` alone: the bare flag, ``--overwrite``)."""
    return Param(name, values)
