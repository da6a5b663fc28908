"""``ModelFields``: the fields that name a model and where it runs, declared once for the model
to open (``model.inference.spec.ModelSpec``) and a training run (``model.training.options.TrainOptions``)."""
import os
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union


@dataclass(frozen=True)
class ModelFields:
    """What each field means: ``ModelSpec``'s docstring (docs/api.md)."""
    weights: Union[str, os.PathLike, None] = None
    config: Optional[int] = None
    overrides: Sequence[str] = ()
    device: Optional[str] = None
    threads: int = 0

    def __post_init__(self):
        """Paths as strings, ``overrides`` as a tuple of 'name=value' strings (other types kept for the checks)."""
        overrides = () if self.overrides is None else self.overrides
        if isinstance(overrides, Mapping):
            overrides = [f'{name}={value!r}' for name, value in overrides.items()]
        for name, value in list(vars(self).items()):
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        object.__setattr__(self, 'overrides', tuple(overrides) if isinstance(overrides, (list, tuple)) else overrides)
