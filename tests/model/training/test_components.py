"""The training run's parts (model.training.components): a named choice nobody made never stands in."""
from types import SimpleNamespace

import paddle
import pytest

from solov2.model.training.components import make_optimizer


@pytest.mark.parametrize('name, kind', [('momentum', paddle.optimizer.Momentum), ('adamw', paddle.optimizer.AdamW),
                                        ('sgd', None)])
def test_the_optimizer_named_is_built_and_another_is_refused(name, kind):
    """'momentum' and 'adamw' build theirs; another name ('sgd') is refused, not built as Momentum."""
    cfg = SimpleNamespace(optimizer=name, grad_clip=0.0, weight_decay=1e-4, momentum=0.9)
    model = paddle.nn.Linear(2, 2)
    if kind is None:
        with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
            make_optimizer(cfg, model, 0.01)
    else:
        assert type(make_optimizer(cfg, model, 0.01)) is kind
