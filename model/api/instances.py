"""``Instances``: what ``Segmenter`` returns for one picture, with the few things people do
with it (filter, COCO records, a drawn picture)."""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from solov2.config.errors import InputError
from solov2.data.results import instances_to_coco
from solov2.data.visualize import draw_instances

CHANNELS = ('bgr', 'rgb')


def check_channels(channels: str) -> str:
    """``channels`` when it is 'bgr' or 'rgb', else InputError."""
    if channels not in CHANNELS:
        raise InputError(f"channels must be 'bgr' (OpenCV's order, the default) or 'rgb', not {channels!r}")
    return channels


@dataclass
class Instances:
    """One picture's instances, best first, on the picture's own pixels.

    masks [N, H, W] bool; labels [N] int64 (0-based index into ``class_names``);
    scores [N] float32; boxes [N, 4] int64, each mask's tight half-open x0, y0, x1, y1
    (zeros for an empty mask); class_names: the model's class list."""
    masks: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    class_names: Tuple[str, ...]

    @classmethod
    def from_detections(cls, detections, class_names: Sequence[str]) -> 'Instances':
        """From a backend's pasted ``Detections`` (``Backend.finish``)."""
        return cls(detections.masks, detections.labels, detections.scores, detections.boxes, tuple(class_names))

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def names(self) -> List[str]:
        """[N] class name of each instance."""
        return [self.class_names[int(label)] for label in self.labels]

    def filter(self, min_score: float = 0.0, classes: Optional[Sequence[str]] = None) -> 'Instances':
        """The instances scoring at least ``min_score`` and, when ``classes`` (names) is given,
        of those classes; order kept."""
        keep = self.scores >= min_score
        if classes is not None:
            unknown = sorted(set(classes) - set(self.class_names))
            if unknown:
                raise InputError(f'unknown class {unknown[0]!r}: the model knows {", ".join(self.class_names)}')
            wanted = [self.class_names.index(name) for name in classes]
            keep &= np.isin(self.labels, wanted)
        return Instances(self.masks[keep], self.labels[keep], self.scores[keep], self.boxes[keep], self.class_names)

    def to_coco(self, image_id: int, category_ids: Optional[Sequence[int]] = None) -> List[Dict[str, Any]]:
        """COCO result records (RLE masks): ``{image_id, category_id, segmentation, score,
        bbox}``; ``category_ids[label]`` is each label's COCO id (default label + 1)."""
        ids = list(category_ids) if category_ids is not None else list(range(1, len(self.class_names) + 1))
        return instances_to_coco(image_id, self.masks, self.labels, self.scores, ids, self.boxes)

    def draw(self, image: np.ndarray, channels: str = 'bgr', min_score: float = 0.3) -> np.ndarray:
        """A copy of ``image`` ([H, W, 3] uint8 in ``channels`` order) with the instances
        scoring at least ``min_score`` drawn (fill, contour, caption), in the same order."""
        rgb = image if check_channels(channels) == 'rgb' else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        drawn = draw_instances(rgb, self.masks, self.labels, self.scores, self.class_names, min_score, self.boxes)
        return drawn if channels == 'rgb' else cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)
