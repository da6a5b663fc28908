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
builds it with ``param``: the message is then a ``Message``, a ``str`` in the caller's Python
words (``pass weights=``, ``resume='auto'``) that also knows its command-line words
(``Message.with_flags``: ``pass --weights``, ``--resume auto``), which the commands show.
"""
import shlex
from dataclasses import dataclass
from os import PathLike
from typing import Mapping, Tuple, Union


class Solov2Error(Exception):
    """Base of every error this toolkit raises on purpose."""


class InputError(Solov2Error, ValueError):
    """Bad input or usage the user can fix; the message names the fix."""


class RunError(Solov2Error, RuntimeError):
    """The work itself failed; the message says what and why."""


@dataclass(frozen=True)
class Param:
    """A parameter named in a message, with the value(s) to pass if any (several: alternatives)."""
    name: str
    values: tuple

    def python(self) -> str:
        """``name=`` or ``name='a'|'b'``."""
        return self.name + '=' + '|'.join(repr(_plain(v)) for v in self.values)

    def command(self, flag: str) -> str:
        """``--flag``, ``--flag a|b`` (a list: its items, each quoted as a shell needs)."""
        if self.values in ((), (True,)):
            return flag
        return flag + ' ' + '|'.join(_shell(v) for v in self.values)


def _plain(value):
    return str(value) if isinstance(value, PathLike) else value


def _shell(value) -> str:
    """A value as a shell reads it back: a list as its items; quoted where needed, in double
    quotes when nothing in it is special there (``"class_names=('a', 'b')"``)."""
    if isinstance(value, (list, tuple)):
        return ' '.join(_shell(v) for v in value)
    text = str(_plain(value))
    quoted = shlex.quote(text)
    return f'"{text}"' if quoted != text and not set(text) & set('"$`\\!') else quoted


class Message(str):
    """A message naming the caller's parameters (``param``): as a ``str`` it reads in Python
    words; ``with_flags`` gives its command-line words. ``+`` with a str keeps the parameters
    (an f-string does not: concatenate around a ``param``)."""
    pieces: Tuple[Union[str, Param], ...]

    def __new__(cls, pieces):
        pieces = tuple(pieces)
        message = super().__new__(cls, ''.join(p if isinstance(p, str) else p.python() for p in pieces))
        message.pieces = pieces
        return message

    def __getnewargs__(self):
        return (self.pieces,)

    def __add__(self, other) -> 'Message':
        return Message(self.pieces + _pieces(other)) if isinstance(other, str) else NotImplemented

    def __radd__(self, other) -> 'Message':
        return Message(_pieces(other) + self.pieces) if isinstance(other, str) else NotImplemented

    def with_flags(self, flags: Mapping[str, str]) -> str:
        """The message with each parameter as its command-line flag: ``flags[name]``, else
        ``--name`` with dashes for underscores."""
        return ''.join(p if isinstance(p, str) else p.command(flags.get(p.name, '--' + p.name.replace('_', '-')))
                       for p in self.pieces)


def _pieces(text: str) -> tuple:
    return text.pieces if isinstance(text, Message) else (str(text),)


def param(name: str, *values) -> Message:
    """The parameter ``name`` in a message, with the value(s) to give it if any: ``weights=``,
    ``backend='onnx'|'openvino'`` to a Python caller; ``--weights``, ``--backend onnx|openvino``
    on a command line (``True`` alone: the bare flag, ``--overwrite``)."""
    return Message((Param(name, values),))


def labelled(label: str, value) -> str:
    """``label`` with ``value``: a value-less ``param`` takes it (``output='x'`` / ``--output x``),
    any other label is followed by it (``the sidecar x.json``)."""
    pieces = getattr(label, 'pieces', ())
    if len(pieces) == 1 and isinstance(pieces[0], Param) and not pieces[0].values:
        return param(pieces[0].name, value)
    return f'{label} {value}'


def message_of(exc: BaseException) -> str:
    """``exc``'s message, a ``Message`` (its parameters kept) when it was raised with one."""
    return exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], Message) else str(exc)
