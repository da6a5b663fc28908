"""Paddle, imported with the host's logging left as the host set it.

Paddle 3's import sets the root logger's level to INFO and gives it a ``StreamHandler``
(``paddle.distributed.utils.log_utils.get_logger``, called by modules it imports), after which
every library's INFO lines print in the host program. Every toolkit module that imports Paddle
before ``solov2.model`` has (``solov2.model`` itself, ``data.loader``, ``convert.to_ppdet``,
``config.install``) takes it from here."""
import logging
import warnings
from types import ModuleType


def import_paddle() -> ModuleType:
    """The ``paddle`` module; its first import leaves the root logger's level as it was and
    takes off the plain ``StreamHandler``s the import gave it (a handler of another kind, or one
    the host had, stays), and says nothing of ccache (Paddle 3's import warns that its C++ extension
    builder finds none: nothing a user of the toolkit builds; the warning filters are the host's again
    after it)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='No ccache found', category=UserWarning)
            import paddle
    finally:
        root.setLevel(level)
        for handler in list(root.handlers):
            if handler not in handlers and type(handler) is logging.StreamHandler:
                root.removeHandler(handler)
    return paddle


paddle = import_paddle()
