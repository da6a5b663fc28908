"""What the service's OpenAPI declares: the segmentation route's query, body and answer, the
other routes' answers (pydantic models that only describe the JSON the routes answer), each
refusal's meaning; HEAD answers without a body."""
from typing import Any, Dict, List, Optional

from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, create_model

from solov2.data.results import MASK_FIELDS, RECORD_FIELDS

QUERY = {
    'score_threshold': "SOLOv2's candidate threshold: the category score a grid cell needs to become a candidate, "
                       "before mask scoring and Matrix NMS (default: the config's); answered scores can be lower",
    'min_score': 'the least final score an answered instance has (default 0.3; 0 answers every instance)',
    'max_instances': "the most instances answered (default: the config's max_per_image)",
    'masks': 'each mask as COCO RLE ("mask"), as outlines ("polygons") or not at all',
    'format': 'the answer: the instances (default), their COCO result records (image_id 0, RLE masks) or a labelme '
              'file of them (polygons)',
    'name': "the picture's file name, for the COCO records' file_name and the labelme file's imagePath",
}
STATUSES = {
    400: 'an empty body, bytes that are not a picture, a bad query value, a form without "file"',
    408: 'the body did not arrive in time, or came too slowly',
    413: 'a body over the size limit (see the body) or a picture over max_pixels (GET /v1/model)',
    415: 'a Content-Type that is not a picture or a form',
    500: 'a failure of the service itself; request_id names its log line',
    503: 'not ready yet (GET /readyz says why), or busy: try again after Retry-After seconds',
    504: "no answer within the service's timeout_s",
    'default': 'another refusal (404, 405: an unknown path or method; 400: a malformed request)',
}
PICTURE_TYPES = ('application/octet-stream', 'image/jpeg', 'image/png', 'image/webp', 'image/bmp', 'image/tiff',
                 'image/gif')      # named one by one: generators drop a range (image/*); the first is their default


class Closed(BaseModel):
    """A JSON object with the declared keys only (``additionalProperties: false``): clients can rely on them."""
    model_config = ConfigDict(extra='forbid')


class Rle(Closed):
    """A mask as COCO RLE: ``pycocotools.mask.decode`` gives it as [H, W] uint8."""
    size: List[int] = Field(min_length=2, max_length=2, description='[H, W]')
    counts: str = Field(description="pycocotools' compressed run lengths")


LIMITS: Dict[str, dict] = {'label': {'ge': 0}, 'score': {'ge': 0, 'le': 1}, 'box': {'min_length': 4, 'max_length': 4}}
FIELDS: Dict[str, Any] = {key: (kind, Field(description=meaning, **LIMITS.get(key, {})))
                          for key, kind, meaning in RECORD_FIELDS}    # data.results' record, with its limits
FIELDS.update({key: (Rle if kind is dict else kind, Field(None, description=meaning))   # then its masks
               for _, key, kind, meaning in MASK_FIELDS})


class Instance(create_model('Fields', __base__=Closed, **FIELDS)):
    """One instance; its mask as ``mask`` (masks=rle), ``polygons`` (masks=polygons) or none."""


class Answer(Closed):
    """The instances of the picture, best first (``Instances.to_dict()``)."""
    image_size: List[int] = Field(min_length=2, max_length=2, description='[H, W] of the picture')
    class_names: List[str] = Field(description="the model's classes")
    instances: List[Instance]
    model_version: str = Field(description='the model version that answered (also the X-Model-Version header)')


class Problem(BaseModel):
    """A refusal."""
    error: str = Field(description='what is wrong and what to change, in one line')
    request_id: str = Field(description="the request's X-Request-ID, which the service's log names")


class Model(BaseModel):
    """The model served (more keys may come)."""
    config: int = Field(description="the config's number")
    config_name: str = Field(description="the config's name")
    classes: List[str] = Field(description='the class names, by label')
    backend: str = Field(description='the engine that runs the network')
    asked: str = Field(description='the engine asked for (auto: the faster exported one, else dygraph)')
    precision: str = Field(description="the engine's precision (f32, bf16, int8; fp16 through TensorRT)")
    pinned: bool = Field(description='auto runs this engine because the cache pins it (tools/cache.py bake, pinned), '
                                     'not by timing it on this CPU and thread count')
    weights: Optional[str] = Field(description="the weights file's name (no folder)")
    model_dir: Optional[str] = Field(description="the exported model folder's name (no path)")
    max_batch: int = Field(description='the most pictures in one network run')
    max_pixels: int = Field(description='the largest picture taken, in pixels (0: no limit)')
    max_body_mb: float = Field(description='the largest request body, MB')
    timeout_s: float = Field(description='seconds from a request to its answer, at most')
    replica: str = Field(description='a random id of the process that answered (no process id or host)')
    version: str = Field(description='the model version serving (its name in the versions folder, else '
                                     'solov2-<config name>-<weights name>)')


class Alive(Closed):
    """The process answers."""
    alive: bool


class Ready(Closed):
    """The model is loaded and warmed up."""
    ready: bool
    engine: str = Field(description='the engine serving')
    fallback: Optional[str] = Field(None, description='only when the engine is not the one asked for: why '
                                    '(auto that could not export serves on dygraph, several times slower)')


def refusals(*statuses) -> dict:
    """The OpenAPI ``responses`` of ``statuses`` (``STATUSES``' keys), each a ``Problem``."""
    return {status: {'model': Problem, 'description': STATUSES[status]} for status in statuses}


def picture_body(max_body_mb: float) -> dict:
    """The segmentation route's ``openapi_extra``: its body, a picture file or a form."""
    binary = {'type': 'string', 'format': 'binary'}
    form = {'type': 'object', 'properties': {'file': binary}, 'required': ['file']}
    return {'requestBody': {'required': True, 'description': f'a picture file (JPEG, PNG, BMP, WebP, TIFF, ...) of '
                            f'at most {max_body_mb:g} MB, as the body (any image/... type) or as the field "file" of '
                            'a form', 'content': {**dict.fromkeys(PICTURE_TYPES, {'schema': binary}),
                                                  'multipart/form-data': {'schema': form}}}}


def openapi_of(app) -> dict:
    """The OpenAPI document of ``app`` (FastAPI's, kept as ``app.openapi_schema``), its HEAD
    answers without content: they have no body."""
    app.openapi_schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                     routes=app.routes)
    for methods in app.openapi_schema['paths'].values():
        for response in methods.get('head', {}).get('responses', {}).values():
            response.pop('content', None)
    return app.openapi_schema
