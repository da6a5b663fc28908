"""The service's settings, each declared once with its default, its bound and its one-line help
(docs/serving.md): ``ServeSettings`` checks them when made, and ``tools/serve.py`` makes one flag
of each (named as the field, dashes for underscores), its bound and help from here. No Paddle is imported, so
the command parses its flags before it loads anything.
"""
import dataclasses
import numbers
import warnings
from typing import TYPE_CHECKING, Optional

from solov2.core.errors import InputError, param

if TYPE_CHECKING:
    from solov2.model.inference.spec import ModelSpec


def limit(default, least: float, help: str, whole: bool = True, above: bool = False):
    """A setting's field: its ``default`` (None: ``help`` says what it then is), a whole number (or,
    not ``whole``, a finite one) of at least ``least`` (``above``: above it) and its ``help``."""
    return dataclasses.field(default=default, metadata={'least': least, 'whole': whole, 'above': above, 'help': help})


def text(help: str, env: Optional[str] = None):
    """A text setting's field, None by default; ``env``: the command takes it from that environment variable
    (a secret: no flag, which ``ps`` would show)."""
    return dataclasses.field(default=None, metadata={'text': True, 'env': env, 'help': help})


def choice(default: str, choices: tuple, help: str):
    """A setting's field naming one of ``choices``, ``default`` unless given."""
    return dataclasses.field(default=default, metadata={'choices': choices, 'help': help})


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """What a service runs (``model``, as ``Segmenter`` takes it) and its limits, checked when made.
    A help names another setting by its field name; the command writes it as its flag. A ``switch`` (``page``)
    is on unless turned off (the command's flag turns it off)."""
    model: 'ModelSpec'
    max_batch: int = limit(4, 1, 'most pictures in one network run')
    max_wait_ms: float = limit(5.0, 0, 'how long a picture waits for others to join its network run', whole=False)
    max_padding: float = limit(0.0, 0, whole=False, help=(
        'pictures of different padded sizes share a network run when the batch then has at most 1 + this times the '
        'pixels they run with alone (dygraph, onnx; 0: one size, or one size bucket, a run; docs/serving.md says '
        'when more pays)'))
    queue_size: int = limit(16, 1, 'requests in flight (body read) per process; more get 503 with Retry-After; large '
                                   'pictures (a cost over max_in_flight_mb / queue_size) hold half of them')
    max_body_mb: float = limit(32.0, 0, 'largest request body, MB', whole=False, above=True)
    max_pixels: Optional[int] = limit(None, 0, "largest picture in pixels, more get 413; 0: no limit (default: the "
                                               "config's max_image_pixels, 100 MP unless overridden, lowered to the "
                                               'pictures max_in_flight_mb holds)')
    max_in_flight_mb: Optional[float] = limit(None, 0, whole=False, help=(
        'memory the pictures in flight hold at once, MB, each its decoding peak from its admission until its answer '
        'is made (decoded, waiting for the network, finished); a picture with no room beside them gets 503 at once, '
        "one that alone needs more 413; 0: no budget (default: 1024, or an eighth of the machine's memory when less)"))
    timeout_s: float = limit(30.0, 0, whole=False, above=True, help=(
        'a request unanswered after this many seconds gets 504; also how long a stop waits for the requests in flight'))
    max_uploads: int = limit(64, 1, 'request bodies being received at once per process, each up to max_body_mb; more '
                                    'get 503 with Retry-After before their body is read')
    body_timeout_s: float = limit(10.0, 0, whole=False, above=True, help=(
        'a client that sends nothing of its body for this many seconds gets 408 and its connection closed'))
    min_upload_kb_s: float = limit(32.0, 0, whole=False, help=(
        'a body that comes slower than this many KB a second after its first 2 s gets 408 and its connection closed, '
        'its upload slot freed (0: any rate)'))
    helper_threads: int = limit(0, 0, 'threads that decode and finish pictures per process (0: one per core)')
    page: bool = dataclasses.field(default=True, metadata={'switch': True, 'help': (
        'the page at / where people drop pictures and look at their masks; turned off: the API only')})
    label_studio_url: Optional[str] = text(
        "the Label Studio whose pictures (its tasks' /data/ URLs) the ML backend routes fetch, e.g. "
        'http://127.0.0.1:8080 (docs/label_studio.md)')
    label_studio_files: Optional[str] = text(
        "a folder whose pictures the ML backend routes read when a task's picture is a file path (inside it)")
    label_studio_token: Optional[str] = text(
        "the Label Studio token the ML backend routes fetch pictures with: a personal access token (exchanged at "
        "label_studio_url's /api/token/refresh/) or a legacy one", env='LABEL_STUDIO_API_KEY')
    label_studio_tag: str = choice('PolygonLabels', ('PolygonLabels', 'BrushLabels'), (
        'the tag the ML backend routes predict when a labelling config has both PolygonLabels and BrushLabels (the '
        'other is left to people)'))
    versions: Optional[str] = text(
        'a folder of model versions (made when missing): the weights given become its first, the version it names '
        'as serving is served, training from Label Studio adds versions, SOLOV2_ADMIN_TOKEN lets an operator switch '
        '(docs/label_studio.md); needs weights (not an exported model folder) and one worker process')
    admin_token: Optional[str] = text(
        'the token of the admin routes (/v1/admin/..., sent as "Authorization: Bearer TOKEN"); without it they do '
        'not exist', env='SOLOV2_ADMIN_TOKEN')
    train_threads: int = limit(1, 1, 'CPU threads of a training round from Label Studio (its own process, at a lower '
                                     'priority than the requests; docs/label_studio.md)')
    train_iters: int = limit(300, 1, 'iterations of a training round from Label Studio')
    train_opt: Optional[str] = text('config changes for training rounds, NAME=VALUE separated by spaces (the '
                                    'config overrides train.py takes), e.g. "base_lr=0.001 warmup_iters=5"')
    max_decode_mb: Optional[float] = limit(None, 0, whole=False, help=(
        'the old name of max_in_flight_mb (the budget holds the pictures in flight, not only while they decode), '
        'kept for one release: given, it says so'))

    def __post_init__(self):
        """InputError naming the field for a value outside its bound (``limit``); None only where it is the default;
        ``max_decode_mb`` (the old name) taken as ``max_in_flight_mb``, with a warning that says so."""
        for field in dataclasses.fields(self)[1:]:
            name, value, bound = field.name, getattr(self, field.name), field.metadata
            if bound.get('switch'):
                if not isinstance(value, bool):
                    raise InputError(param(name), f' is on or off (True or False), not {value!r}')
                continue
            if bound.get('choices'):
                if value not in bound['choices']:
                    raise InputError(param(name), f" is one of {', '.join(bound['choices'])}, not {value!r}")
                continue
            if bound.get('text'):
                if value is not None and not (isinstance(value, str) and value):
                    raise InputError(param(name), f' is text, not {value!r}')
                continue
            kind = numbers.Integral if bound['whole'] else numbers.Real
            number = isinstance(value, kind) and not isinstance(value, bool)
            within = (number and bound['least'] <= value < float('inf')
                      and not (bound['above'] and value == bound['least']))
            if not ((value is None and field.default is None) or within):
                raise InputError(param(name), f" takes a {'whole ' * bound['whole']}number "
                                              f"{'above' if bound['above'] else 'of at least'} {bound['least']}, "
                                              f'not {value!r}')
        if self.versions is not None and self.model.weights is None:
            raise InputError(f'{param("versions")} holds checkpoints: serve weights, not an exported model folder')
        if self.max_decode_mb is not None:
            if self.max_in_flight_mb is not None:
                raise InputError(f'{param("max_decode_mb")} is the old name of {param("max_in_flight_mb")}: give one')
            warnings.warn(f'{param("max_decode_mb")} is the old name of {param("max_in_flight_mb")} (the pictures in '
                          'flight hold it until answered, not only while they decode); it goes in the next release',
                          FutureWarning, stacklevel=3)
            object.__setattr__(self, 'max_in_flight_mb', self.max_decode_mb)
            object.__setattr__(self, 'max_decode_mb', None)          # taken: a copy (replace) is not warned again
