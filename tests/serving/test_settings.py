"""The service's settings check themselves when made (``ServeSettings``): a limit that cannot
work is one InputError line naming the field in Python words to a caller of ``create_app`` or Ray
Serve (the command shows it as it is: test_command.py); the service's library code names no flag."""
import dataclasses
import re
from pathlib import Path

import pytest

from solov2.core.errors import InputError
from solov2.serving import app
from tests.serving.running import SMALL_MODEL, ServeSettings, create_app

BAD = {'max_batch': (0, 2.5, True), 'queue_size': (0, '16'), 'max_uploads': (-1,), 'max_pixels': (-1,),
       'helper_threads': (-1,), 'max_wait_ms': (-1, float('inf')), 'max_padding': (-0.5,), 'max_body_mb': (0, 'nan'),
       'max_in_flight_mb': (-1,), 'timeout_s': (0, float('nan')), 'body_timeout_s': (0,), 'min_upload_kb_s': (-1,)}


@pytest.mark.parametrize('name, value', [(name, value) for name, values in BAD.items() for value in values])
def test_a_limit_that_cannot_work_is_one_line_naming_the_field(name, value):
    with pytest.raises(InputError) as info:
        create_app(ServeSettings(SMALL_MODEL, **{name: value}))
    assert re.fullmatch(rf'{name}= takes a (whole )?number (above|of at least) [01], not .+', str(info.value))


def test_the_service_library_names_no_command_line_flag():
    flags = {path.name: re.findall(r'(?<![\w-])--[a-z][\w-]*', path.read_text())
             for path in Path(app.__file__).parent.glob('*.py')}
    assert len(flags) > 5 and not any(flags.values()), flags


def test_every_setting_has_one_flag_with_its_default_and_its_bound(capsys):
    """tools/serve.py has a flag for each setting but the model, named as it, with its default; a value
    past the setting's bound is refused under the flag by argparse, as ``ServeSettings`` refuses it."""
    from solov2.tools import serve
    defaults = serve.parse_args([])
    for field in dataclasses.fields(ServeSettings)[1:]:
        flag, bound = '--' + field.name.replace('_', '-'), field.metadata
        if bound.get('env'):               # a secret: from the environment (settings_of), no flag that ps shows
            assert not hasattr(defaults, field.name)
            continue
        assert getattr(defaults, field.name) == field.default, flag
        if bound.get('text'):
            assert getattr(serve.parse_args([flag, 'x']), field.name) == 'x'
            with pytest.raises(InputError, match=f'{field.name}= is text'):
                ServeSettings(SMALL_MODEL, **{field.name: 3})
            continue
        if bound.get('choices'):           # one of its choices, named by the flag; another refused by both
            assert getattr(serve.parse_args([flag, bound['choices'][-1]]), field.name) == bound['choices'][-1]
            with pytest.raises(SystemExit):
                serve.parse_args([flag, 'another'])
            with pytest.raises(InputError, match=f'{field.name}= is one of'):
                ServeSettings(SMALL_MODEL, **{field.name: 'another'})
            continue
        if bound.get('switch'):            # on by default, --no-<name> turns it off; not a yes or no word
            assert getattr(serve.parse_args(['--no-' + flag[2:]]), field.name) is False
            with pytest.raises(InputError, match=f'{field.name}= is on or off'):
                ServeSettings(SMALL_MODEL, **{field.name: 'no'})
            continue
        past = bound['least'] if bound['above'] else bound['least'] - (1 if bound['whole'] else 0.5)
        with pytest.raises(SystemExit):
            serve.parse_args([flag, str(past)])
        assert f'argument {flag}: takes a ' in capsys.readouterr().err
        with pytest.raises(InputError, match=f'{field.name}= takes a '):
            ServeSettings(SMALL_MODEL, **{field.name: past})


def test_every_query_parameter_is_described_once_and_documented():
    """``/v1/segment``'s query parameters: each described in ``schema.QUERY`` (what the OpenAPI
    says of it), none described that the route does not take, each named in docs/serving.md's routes."""
    from solov2.serving.schema import QUERY
    from tests.helpers import REPO_DIR
    parameters = create_app(ServeSettings(SMALL_MODEL)).openapi()['paths']['/v1/segment']['post']['parameters']
    assert {one['name']: one['description'] for one in parameters} == QUERY
    routes = (REPO_DIR / 'docs' / 'serving.md').read_text().split('Routes:', 1)[1].split('## ', 1)[0]
    assert [name for name in QUERY if f'`{name}' not in routes] == []


def test_the_settings_table_has_each_setting_with_its_default_and_only_flags_the_command_has():
    """docs/serving.md's settings table: a row for each ``ServeSettings`` field but the model (its flag; a
    switch's ``--no-`` one; a secret's environment variable), whose default column starts with the field's
    default where that is a number; every flag it names is one of ``solov2 serve``'s. A setting added in code
    and not in the table fails here."""
    from tests.helpers import REPO_DIR
    section = (REPO_DIR / 'docs' / 'serving.md').read_text().split('\n## Settings\n', 1)[1].split('\n## ', 1)[0]
    rows = {flag: default.strip() for flags, default in re.findall(r'^\| ([^|]+) \| ([^|]+) \|', section, re.MULTILINE)
            for flag in re.findall(r'`(--[a-z][\w-]*)', flags)}
    for field in dataclasses.fields(ServeSettings)[1:]:
        if field.metadata.get('env'):       # a secret, from the environment: the table names its variable
            assert f"`{field.metadata['env']}`" in section, f'docs/serving.md, Settings: no {field.name} variable'
            continue
        dashed = field.name.replace('_', '-')
        flag = f'--no-{dashed}' if field.metadata.get('switch') else f'--{dashed}'
        assert flag in rows, f'docs/serving.md, Settings: no row for {flag} ({field.name})'
        if isinstance(field.default, (int, float)) and not isinstance(field.default, bool):
            assert re.match(rf'{field.default:g}\b', rows[flag]), (flag, field.default, rows[flag])
    known = set(re.findall(r'(?<![\w-])--[a-z][\w-]*', serve_help()))
    assert set(rows) <= known, sorted(set(rows) - known)


def serve_help() -> str:
    """``solov2 serve --help``."""
    import contextlib
    import io

    from solov2.tools import serve
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        serve.parse_args(['--help'])
    return out.getvalue()
