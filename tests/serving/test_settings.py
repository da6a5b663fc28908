"""The service's settings check themselves when made (``ServeSettings``): a limit that cannot
work is one InputError line naming the field in Python words to a caller of ``create_app`` or Ray
Serve (the command shows it as it is: test_command.py); the service's library code names no flag."""
import re
from pathlib import Path

import pytest

from solov2.core.errors import InputError
from solov2.serving import app
from tests.serving.running import SMALL_MODEL, ServeSettings, create_app

BAD = {'max_batch': (0, 2.5, True), 'queue_size': (0, '16'), 'max_uploads': (-1,), 'max_pixels': (-1,),
       'helper_threads': (-1,), 'max_wait_ms': (-1, float('inf')), 'max_padding': (-0.5,), 'max_body_mb': (0, 'nan'),
       'max_decode_mb': (-1,), 'timeout_s': (0, float('nan')), 'body_timeout_s': (0,), 'min_upload_kb_s': (-1,)}


@pytest.mark.parametrize('name, value', [(name, value) for name, values in BAD.items() for value in values])
def test_a_limit_that_cannot_work_is_one_line_naming_the_field(name, value):
    with pytest.raises(InputError) as info:
        create_app(ServeSettings(SMALL_MODEL, **{name: value}))
    assert re.fullmatch(rf'{name}= takes a (whole )?number (above|of at least) [01], not .+', str(info.value))


def test_the_service_library_names_no_command_line_flag():
    flags = {path.name: re.findall(r'(?<![\w-])--[a-z][\w-]*', path.read_text())
             for path in Path(app.__file__).parent.glob('*.py')}
    assert len(flags) > 5 and not any(flags.values()), flags
