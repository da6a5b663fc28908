"""The toolkit's Python API: the one import path for using SOLOv2 from a program.

    from solov2 import Segmenter              # the same names as solov2.api
    seg = Segmenter('weights/shapes_r18.pdparams')
    result = seg('images/shapes_000001.jpg')       # Instances: masks, labels, scores, boxes

``start_processes`` joins the processes of ``paddle.distributed.launch`` (pass its ``Processes`` to
``Segmenter`` and ``evaluate`` to share the images out). The library logs through ``logging``, prints
nothing and leaves the process as it found it; ``tune_process`` tunes the whole process for speed.
"""
if not __name__.startswith('solov2.'):      # one name per module (solov2/__init__.py)
    raise ImportError(f'import solov2.{__name__}, not {__name__}: each module of the toolkit has one name')
from solov2.api.evaluation import evaluate
from solov2.api.instances import Instance, Instances
from solov2.api.segmenter import Segmenter
from solov2.api.training import TrainOptions, TrainSummary, train
from solov2.core.errors import InputError, RunError, Solov2Error
from solov2.core.paths import SAMPLE_IMAGES, SHIPPED_WEIGHTS
from solov2.model.distributed import Processes, start_processes
from solov2.model.inference.spec import ModelSpec
from solov2.model.tuning import tune_process

__all__ = ['Segmenter', 'ModelSpec', 'Instances', 'Instance', 'evaluate', 'train', 'TrainOptions', 'TrainSummary',
           'start_processes', 'Processes', 'InputError', 'RunError', 'Solov2Error', 'SHIPPED_WEIGHTS', 'SAMPLE_IMAGES',
           'tune_process']
