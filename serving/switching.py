"""The model a service serves and the atomic switch to another (docs/label_studio.md, "Model versions").

``Served`` is one opened model (a ``Segmenter`` and its version's name) with the requests that took it: a
request takes (``Slot.lease``) the model serving as it is admitted and keeps it to its answer; ``Slot.put``
makes another serve from the next request on, and the one it replaces is closed once its last request is
answered. Both run on the service's event loop, the one thread that touches the leases.
"""
import dataclasses
from typing import Optional

from solov2.api.segmenter import Segmenter
from solov2.model.inference.pipeline import Predictor


@dataclasses.dataclass(eq=False)
class Served:
    """One opened model: its ``segmenter``, its version's ``version`` name, whether the service ``owns`` it
    (closes it once replaced; a host's stays the host's), the requests holding it (``leases``) and whether
    another has replaced it (``retired``)."""
    segmenter: Segmenter
    version: str
    owns: bool = True
    leases: int = 0
    retired: bool = False

    @property
    def predictor(self) -> Predictor:
        """The segmenter's predictor (``Segmenter.predictor``)."""
        return self.segmenter.predictor

    def close(self) -> None:
        """Close the segmenter if the service owns it."""
        if self.owns:
            self.segmenter.close()


class Slot:
    """The model serving (``current``, None until one is put), switched atomically on the event loop."""

    def __init__(self) -> None:
        self.current: Optional[Served] = None

    def lease(self) -> Served:
        """The model serving, held for one request until ``release``; RuntimeError before one is put."""
        served = self.current
        if served is None:
            raise RuntimeError('no model serving yet')
        served.leases += 1
        return served

    def release(self, served: Served) -> None:
        """A request that held ``served`` is answered: close it when it was replaced and this was its last."""
        served.leases -= 1
        if served.retired and served.leases == 0:
            served.close()

    def put(self, served: Served) -> Optional[Served]:
        """Serve ``served`` from the next lease on; the one it replaces (returned) is closed at once when no
        request holds it, else when the last that does is answered."""
        old, self.current = self.current, served
        if old is not None:
            old.retired = True
            if old.leases == 0:
                old.close()
        return old

    def close(self) -> None:
        """Close the model serving (the service stops; the requests it held are answered or given up)."""
        if self.current is not None:
            self.current.close()
