"""The project's one error hierarchy. Library code raises these; the commands map them to
exit codes in one place (``tools.cli.run_command``):

- ``InputError`` (exit 2): something the user handed in or asked for cannot be used — a bad
  command line, a missing or malformed file, an output path that would overwrite an input,
  a checkpoint that does not fit the config. The message says what and how to fix it.
- ``RunError`` (exit 1): a failure while doing the work (an export that does not match the
  model, a non-finite loss, a data worker that died).

``InputError`` is a ``ValueError`` and ``RunError`` a ``RuntimeError``, so code that catches
the built-in kinds keeps working.
"""


class Solov2Error(Exception):
    """Base of every error this toolkit raises on purpose."""


class InputError(Solov2Error, ValueError):
    """Bad input or usage the user can fix; the message names the fix."""


class RunError(Solov2Error, RuntimeError):
    """The work itself failed; the message says what and why."""
