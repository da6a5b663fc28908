"""The service's contract (one server for the module): its OpenAPI is valid
(openapi-spec-validator), has the package's version and declares the answer's schema, which
every answer follows (masks rle, polygons, none), the other routes' answers and the error
shape, which every refusal here follows, and every status the tests here provoke; HEAD
answers declared without a body; the picture types one by one; ``min_score`` answers what
``Segmenter``'s gives; HEAD on the health routes; no /docs page; each stage's timing and the
process's own metrics."""
import time
from pathlib import Path

import pytest

import solov2
from solov2 import ModelSpec, Segmenter
from solov2.core.paths import SAMPLE_IMAGES
from solov2.data.results import MASK_KEYS, RECORD_FIELDS
from tests.serving.running import SMALL_MODEL, ServeSettings, metric_families, serving
from tests.serving.test_service import same_answer

PICTURE = (Path(SAMPLE_IMAGES) / 'shapes_000023.jpg').read_bytes()    # scores from 0.92 down to 0.06
SEEN = set()            # (method, path, status) of every answer in this module, checked by the last test
REFUSALS = []           # the JSON of every refusal in this module, checked by the last test


def record(response) -> None:
    SEEN.add((response.request.method, response.request.url.path, response.status_code))
    if response.status_code >= 400 and response.request.method != 'HEAD':
        response.read()
        REFUSALS.append(response.json())


@pytest.fixture(scope='module')
def client():
    with serving(ServeSettings(SMALL_MODEL, max_body_mb=1)) as running:
        running.event_hooks['response'].append(record)
        yield running


@pytest.fixture(scope='module')
def spec(client):
    return client.get('/openapi.json').json()


def operation(spec: dict, path: str, method: str = 'get') -> dict:
    return spec['paths'][path][method]


def test_the_spec_is_valid_openapi_with_the_packages_version_and_limits(spec):
    assert spec['info']['version'] == solov2.__version__
    segment = operation(spec, '/v1/segment', 'post')
    assert set(segment['responses']) == {'200', '400', '408', '413', '415', '500', '503', '504', 'default'}
    for status in set(segment['responses']) - {'200'}:
        schema = segment['responses'][status]['content']['application/json']['schema']
        assert schema == {'$ref': '#/components/schemas/Problem'}, status
    assert spec['components']['schemas']['Problem']['required'] == ['error', 'request_id']
    ranges = {one['name']: one['schema'] for one in segment['parameters']}
    assert {'minimum': 0, 'maximum': 1, 'type': 'number'} in ranges['score_threshold']['anyOf']
    assert {'minimum': 1, 'type': 'integer'} in ranges['max_instances']['anyOf']
    assert (ranges['min_score']['minimum'], ranges['min_score']['maximum']) == (0, 1)
    assert 'at most 1 MB' in segment['requestBody']['description']
    types = list(segment['requestBody']['content'])         # generators keep octet-stream, drop a range
    assert types[0] == 'application/octet-stream' and {'image/jpeg', 'image/png', 'multipart/form-data'} <= set(types)
    assert not any('*' in one for one in types)
    assert list(operation(spec, '/metrics')['responses']['200']['content']) == ['text/plain']
    pytest.importorskip('openapi_spec_validator', reason='needs requirements-test.txt').validate(spec)


@pytest.mark.parametrize('masks, field', [('rle', 'mask'), ('polygons', 'polygons'), ('none', None)])
def test_each_answer_follows_the_declared_schema(client, spec, masks, field):
    declared = operation(spec, '/v1/segment', 'post')['responses']['200']['content']['application/json']['schema']
    assert declared == {'$ref': '#/components/schemas/Answer'}
    answer = client.post('/v1/segment', content=PICTURE, params={'masks': masks}).json()
    record = [key for key, _, _ in RECORD_FIELDS]
    assert answer['instances'] and all(list(one) == record + [field] * (field is not None)
                                       for one in answer['instances'])
    jsonschema = pytest.importorskip('jsonschema', reason='needs requirements-test.txt')
    jsonschema.validate(answer, {**declared, 'components': spec['components']})
    schemas = spec['components']['schemas']         # a key the schema does not declare fails the validation
    assert all(schemas[name]['additionalProperties'] is False for name in ('Answer', 'Instance', 'Rle'))


def test_the_instance_schema_is_the_declared_record(spec):
    """The schema follows ``data.results``' declaration: its fields in order, then the masks;
    each limit the schema adds is on a declared field."""
    from solov2.serving.schema import LIMITS
    properties = spec['components']['schemas']['Instance']['properties']
    assert list(properties) == [key for key, _, _ in RECORD_FIELDS] + list(MASK_KEYS.values())
    assert [properties[key]['description'] for key, _, _ in RECORD_FIELDS] == [text for _, _, text in RECORD_FIELDS]
    assert set(LIMITS) <= set(properties)


def test_min_score_answers_what_segmenter_gives(client):
    segmenter = Segmenter(SMALL_MODEL)
    expected = segmenter(PICTURE, score_threshold=0.1, min_score=0.5)
    assert 0 < len(expected) < len(segmenter(PICTURE, min_score=0)) and min(expected.scores) >= 0.5
    answer = client.post('/v1/segment', content=PICTURE, params={'score_threshold': 0.1, 'min_score': 0.5})
    same_answer(answer.json(), expected.to_dict())
    shown, everything = segmenter(PICTURE), segmenter(PICTURE, min_score=0)      # the default: at least 0.3
    assert 0 < len(shown) < len(everything)
    same_answer(client.post('/v1/segment', content=PICTURE).json(), shown.to_dict())
    same_answer(client.post('/v1/segment', content=PICTURE, params={'min_score': 0}).json(), everything.to_dict())
    refused = client.post('/v1/segment', content=PICTURE, params={'min_score': 1.5})
    assert refused.status_code == 400 and 'min_score' in refused.json()['error']


def test_health_routes_answer_head_without_a_body_and_declare_none(client, spec):
    """A generated client parses what the document declares: HEAD declares no content."""
    for path in ('/healthz', '/readyz'):
        head = client.head(path)
        assert (head.status_code, head.content) == (200, b''), path
        assert all('content' not in one for one in operation(spec, path, 'head')['responses'].values()), path


@pytest.mark.parametrize('path', ['/v1/model', '/healthz', '/readyz'])
def test_every_answer_has_a_schema_that_it_follows(client, spec, path):
    declared = operation(spec, path)['responses']['200']['content']['application/json']['schema']
    assert declared.get('$ref', '').startswith('#/components/schemas/'), declared
    jsonschema = pytest.importorskip('jsonschema', reason='needs requirements-test.txt')
    jsonschema.validate(client.get(path).json(), {**declared, 'components': spec['components']})


def test_the_model_answer_holds_exactly_its_schemas_fields(client, spec):
    """A key added to /v1/model's answer (serving/app.py's ``model_answer``) and not to its schema
    (serving/schema.py's ``Model``), or the other way round, fails here: the schema allows more keys, so the
    validation above alone would not see it (docs/serving.md's item: tests/test_doc_lists.py)."""
    declared = operation(spec, '/v1/model')['responses']['200']['content']['application/json']['schema']['$ref']
    fields = spec['components']['schemas'][declared.rsplit('/', 1)[1]]['properties']
    assert set(client.get('/v1/model').json()) == set(fields)


def test_docs_page_is_off_and_the_spec_is_served(client):
    assert client.get('/docs').status_code == 404 and client.get('/redoc').status_code == 404
    assert client.get('/openapi.json').status_code == 200


def stage_counts(client) -> dict:
    family = metric_families(client)['solov2_stage_seconds']
    return {s.labels['stage']: s.value for s in family.samples if s.name == 'solov2_stage_seconds_count'}


def test_a_request_moves_each_stages_count_and_the_process_is_measured(client):
    before = stage_counts(client)
    assert client.post('/v1/segment', content=PICTURE).status_code == 200
    after = stage_counts(client)
    assert {stage: after[stage] - before.get(stage, 0) for stage in after} == \
        {'queue': 1, 'decode': 1, 'network': 1, 'postprocess': 1, 'encode': 1}
    families = metric_families(client)
    assert families['process_resident_memory_bytes'].samples[0].value > 0
    assert families['process_cpu_seconds'].samples[0].value > 0


def test_every_status_seen_in_this_module_is_declared(client, spec, tmp_path):
    """The refusals provoked here and every answer of the tests before this one (``SEEN``), but
    for the spec itself and the pages that are off."""
    assert client.post('/v1/segment', content=PICTURE, params={'max_instances': 0}).status_code == 400
    assert client.post('/v1/segment', content=b'\xff' * 2**21).status_code == 413
    assert client.post('/v1/segment', content=b'{}', headers={'Content-Type': 'application/json'}).status_code == 415
    with serving(ServeSettings(ModelSpec(tmp_path / 'missing.pdparams', backend='dygraph')), ready=False) as broken:
        broken.event_hooks['response'].append(record)
        deadline = time.monotonic() + 30
        while 'loading' in broken.get('/readyz').json()['error'] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {broken.head('/readyz').status_code, broken.get('/v1/model').status_code,
                broken.post('/v1/segment', content=PICTURE).status_code} == {503}
    outside = {('GET', '/openapi.json', 200), ('GET', '/docs', 404), ('GET', '/redoc', 404)}
    for method, path, status in SEEN - outside:
        assert str(status) in spec['paths'][path][method.lower()]['responses'], (method, path, status)
    jsonschema = pytest.importorskip('jsonschema', reason='needs requirements-test.txt')
    problem = {'$ref': '#/components/schemas/Problem', 'components': spec['components']}
    assert len(REFUSALS) >= 8
    for refusal in REFUSALS:
        jsonschema.validate(refusal, problem)
