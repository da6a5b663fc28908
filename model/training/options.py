"""The options of a training run: what ``train.py``'s command line sets, as one object the
library takes (``model.training.run.prepare``, ``solov2.api.train``)."""
from dataclasses import dataclass
from typing import Optional, Union

from solov2.config.model_fields import ModelFields


@dataclass(frozen=True)
class TrainOptions(ModelFields):
    """Every option of a training run, its default and flag, after the model's (``ModelFields``: ``--weights``,
    a whole model to start from, whose tensors that fit are loaded, the class head only when the classes
    agree; ``--config``, ``--opt``, ``--device``, ``--threads``; checked as ``ModelSpec.check`` checks them).
    ``classes`` None: the classes of the training annotations, unless the overrides name them."""
    classes: Optional[str] = None           # class list: a classes.txt or COCO file (--classes)
    output: Optional[str] = None            # run folder; None: output/<config class> (--output)
    resume: Optional[str] = None            # checkpoint folder to continue from, or 'auto': <output>/last (--resume)
    overwrite: bool = False                 # start a new run in a folder holding another run, deleting it
    eval_every: int = 0                     # mask AP every K iterations, keeping the best; 0: only at the end
    checkpoint_every: int = 500             # save <output>/last every K iterations
    log_every: int = 20                     # a log line (and train_log.csv row) every N iterations
    max_minutes: float = 0.0                # training-time budget across resumes, evaluation included; 0: none
    max_iters: int = 0                      # stop (after saving) at this iteration; 0: the config's epochs
    scale_lr: bool = False                  # scale base_lr linearly with the total batch (from reference_batch)
    amp: Union[bool, str] = False           # mixed precision on a GPU: 'fp16' (or True) or 'bf16' (--amp [fp16|bf16])
    sync_bn: bool = False                   # BN statistics over all data-parallel processes
    vdl_dir: Optional[str] = None           # also write VisualDL logs (losses, LR, speed, AP, a picture) there
    verbose: bool = False                   # log every resolved config value at the start
