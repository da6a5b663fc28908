"""The service's log lines, one format whether one process or several worker processes run it: each line
its time (ISO 8601, milliseconds, the UTC offset), level, logger and message (``text``), or the same as one
JSON object a line (``json``), on standard error. ``log_config(form)`` is the ``logging.config.dictConfig``
dictionary that ``tools/serve.py`` applies and hands uvicorn (``Config(log_config=...)``), which applies it in
every worker.
"""
import datetime
import json
import logging
from typing import Optional

FORMS = ('text', 'json')
LOGGERS = ('solov2', 'uvicorn')       # the library's loggers and uvicorn's (its error log; its access log is off)


class Lines(logging.Formatter):
    """A record as '2026-11-29T06:20:16.123+00:00 INFO solov2.serving.app: message' (``form`` 'text') or
    as ``{"time", "level", "logger", "message"}`` (``form`` 'json'), a traceback after it or as ``traceback``."""

    def __init__(self, form: str = 'text'):
        if form not in FORMS:
            raise ValueError(f"no log form {form!r}: {', '.join(FORMS)}")
        super().__init__()
        self.form = form

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:  # noqa: N802 (logging's name)
        return datetime.datetime.fromtimestamp(record.created).astimezone().isoformat(timespec='milliseconds')

    def format(self, record: logging.LogRecord) -> str:
        when, message = self.formatTime(record), record.getMessage()
        trace = self.formatException(record.exc_info) if record.exc_info else ''
        if self.form == 'json':
            return json.dumps({'time': when, 'level': record.levelname, 'logger': record.name, 'message': message,
                               **({'traceback': trace} if trace else {})}, ensure_ascii=False)
        return f'{when} {record.levelname} {record.name}: {message}' + (f'\n{trace}' if trace else '')


def log_config(form: str = 'text', level: str = 'INFO') -> dict:
    """The ``dictConfig`` dictionary that sends the library's and uvicorn's records from ``level``, and other
    libraries' warnings (the root logger's), to standard error as ``Lines(form)``."""
    Lines(form)             # an unknown form fails here, not in a worker
    return {'version': 1, 'disable_existing_loggers': False,
            'formatters': {'lines': {'()': f'{__name__}.Lines', 'form': form}},
            'handlers': {'stderr': {'class': 'logging.StreamHandler', 'formatter': 'lines',
                                    'stream': 'ext://sys.stderr'}},
            'loggers': {name: {'handlers': ['stderr'], 'level': level, 'propagate': False} for name in LOGGERS},
            'root': {'handlers': ['stderr'], 'level': 'WARNING'}}      # other libraries' warnings, in this format
