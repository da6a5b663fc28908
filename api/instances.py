"""``Instances``: what ``Segmenter`` returns for one picture, with the things people do with
it (select, iterate, filter, polygons, COCO records, a dict, a drawn picture); ``Instance``:
one of them."""
import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union, overload

import cv2
import numpy as np

from solov2.core.errors import InputError
from solov2.data.labelme import labelme_document
from solov2.data.masks import CroppedMasks
from solov2.data.polygons import mask_polygons
from solov2.data.results import MASK_FORMS, RECORD_FIELDS, SHOWN_MIN_SCORE, instance_records, instances_to_coco
from solov2.data.visualize import draw_bgr, draw_instances
from solov2.model.inference.reading import check_channels


def with_record_fields(cls: type) -> type:
    """``cls`` as a frozen dataclass whose fields are its first declared one, the record's
    (``data.results.RECORD_FIELDS``, in their order), then its others: a field added to the record is the
    ``Instance``'s too."""
    first, *others = cls.__annotations__.items()
    cls.__annotations__ = dict([first, *((key, kind) for key, kind, _ in RECORD_FIELDS), *others])
    return dataclass(frozen=True, eq=False)(cls)


@with_record_fields
class Instance:
    """One instance: ``crop`` (the mask inside ``box``, [y1 - y0, x1 - x0] bool), the record's fields
    (``data.results.RECORD_FIELDS``: ``label``, index into the model's class names, its class ``name``,
    ``score``, ``box``: x0, y0, x1, y1, half-open, tight around the mask, as a tuple) and ``image_size``
    (H, W); ``mask``, the [H, W] bool mask on the picture, is pasted when asked."""
    crop: np.ndarray
    image_size: Tuple[int, int]
    if TYPE_CHECKING:       # what a checker knows of the record's fields, which come at run time
        def __init__(self, crop: np.ndarray, image_size: Tuple[int, int], **record: Any) -> None: ...
        def __getattr__(self, field: str) -> Any: ...

    @property
    def mask(self) -> np.ndarray:
        """[H, W] bool on the picture (pasted from ``crop`` at each call)."""
        return CroppedMasks([self.crop], [self.box], self.image_size).paste(0)

    def __repr__(self) -> str:
        return (f'Instance(name={self.name!r}, label={self.label}, score={self.score:.3f}, box={self.box}, '
                f'mask={list(self.image_size)} with {int(np.count_nonzero(self.crop))} pixels)')


@dataclass(eq=False)
class Instances:
    """One picture's instances, best first, on the picture's own pixels.

    crops: ``CroppedMasks``, each mask kept as its crop to its tight box (what drawing,
    polygons and COCO records read), pasted from the network's mask when first read (drawing
    pastes only the instances it draws); labels [N] int64 (0-based index into
    ``class_names``); scores [N] float32; class_names: the model's class list. ``boxes``
    [N, 4] int64 is each mask's tight half-open x0, y0, x1, y1 (zeros for an empty mask);
    ``masks``, [N, H, W] bool, is pasted once, when first asked.

    ``len`` is N; iterating gives one ``Instance`` each; ``[i]`` one ``Instance``; a slice,
    a boolean mask [N] or an array of indices gives a new ``Instances``
    (``result[result.scores > 0.5]``)."""
    crops: CroppedMasks
    labels: np.ndarray
    scores: np.ndarray
    class_names: Tuple[str, ...]

    @functools.cached_property
    def masks(self) -> np.ndarray:
        """[N, H, W] bool on the picture, pasted from ``crops`` on first use."""
        return self.crops.to_dense()

    @property
    def boxes(self) -> np.ndarray:
        """[N, 4] int64 tight half-open x0, y0, x1, y1 of each mask (zeros when empty)."""
        return self.crops.boxes

    def __len__(self) -> int:
        return len(self.scores)

    def __iter__(self) -> Iterator[Instance]:
        return (self[i] for i in range(len(self)))

    @overload
    def __getitem__(self, index: int) -> Instance: ...
    @overload
    def __getitem__(self, index: Union[slice, Sequence[int], np.ndarray]) -> 'Instances': ...

    def __getitem__(self, index: Union[int, slice, Sequence[int], np.ndarray]) -> Union[Instance, 'Instances']:
        """``Instance`` for an int (negative counts from the end); ``Instances`` for a slice,
        a boolean mask [N] or integer indices (in the order given)."""
        if isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
            if not -len(self) <= index < len(self):
                raise IndexError(f'instance {index} of {len(self)}')
            one = [int(index) % len(self)]          # the record's fields (RECORD_FIELDS) make the Instance
            crop = self.crops.crop(one[0])          # pasted first, once: the record's box is then its crop's
            [record] = instance_records(self.crops[one], self.labels[one], self.scores[one], self.class_names, 'none')
            record['box'] = tuple(record['box'])
            return Instance(crop, image_size=self.image_size, **record)
        keep = index if isinstance(index, slice) else self._indices(index)
        return Instances(self.crops[keep], self.labels[keep], self.scores[keep], self.class_names)

    def _indices(self, index) -> np.ndarray:
        """A boolean mask [N] or integer indices as an index array; InputError otherwise."""
        array = np.asarray(index)
        if array.dtype == bool and array.shape == (len(self),):
            return array
        if array.ndim == 1 and (array.dtype.kind in 'iu' or array.size == 0):
            if array.size and not (-len(self) <= array.min() and array.max() < len(self)):
                raise IndexError(f'an index in {array.tolist()} is outside the {len(self)} instances')
            return array.astype(np.int64)
        raise InputError(f'index Instances with an int, a slice, a boolean mask of length {len(self)} or integer '
                         f'indices, not {type(index).__name__} {list(array.shape)} {array.dtype}')

    @property
    def names(self) -> List[str]:
        """[N] class name of each instance."""
        return [self.class_names[int(label)] for label in self.labels]

    @property
    def image_size(self) -> Tuple[int, int]:
        """(H, W) of the picture the masks lie on."""
        return self.crops.image_size

    def filter(self, min_score: float = 0.0, classes: Optional[Sequence[str]] = None) -> 'Instances':
        """The instances scoring at least ``min_score`` and, when ``classes`` (names) is given,
        of those classes; order kept."""
        keep = self.scores >= min_score
        if classes is not None:
            unknown = sorted(set(classes) - set(self.class_names))
            if unknown:
                raise InputError(f'unknown class {unknown[0]!r}: the model knows {", ".join(self.class_names)}')
            keep &= np.isin(self.labels, [self.class_names.index(name) for name in classes])
        return self[keep]

    def polygons(self) -> List[List[np.ndarray]]:
        """[N] lists of polygons: each instance's mask as one [K, 2] float64 array of (x, y) picture
        coordinates per part worth drawing (``data.polygons.mask_polygons``: filled as COCO fills polygons,
        they give the mask back; specks dropped, outlines simplified; an empty mask has none)."""
        return [mask_polygons(crop, box) for crop, box in zip(self.crops.crops, self.boxes)]

    def to_coco(self, image_id: int, category_ids: Optional[Sequence[int]] = None,
                file_name: Optional[str] = None) -> List[Dict[str, Any]]:
        """COCO result records (RLE masks, ``data.results.instances_to_coco``), as ``demo.py --save-json``
        writes them; ``category_ids[label]`` is each label's COCO id (default label + 1)."""
        return instances_to_coco(image_id, self.crops, self.labels, self.scores, category_ids, file_name=file_name,
                                 class_names=self.class_names)

    def to_dict(self, masks: str = 'rle') -> Dict[str, Any]:
        """The result as plain JSON values: ``{image_size: [H, W], class_names, instances}``,
        the instances best first, each the record ``data.results.RECORD_FIELDS`` declares with
        its mask as ``masks`` says (``MASK_FIELDS``; 'none': no mask is pasted, the boxes are
        measured at the masks' edges); ``data.results.instance_records``, which makes only what is asked."""
        if masks not in MASK_FORMS:
            raise InputError(f"masks must be one of {', '.join(MASK_FORMS)}, not {masks!r}")
        return {'image_size': list(self.image_size), 'class_names': list(self.class_names),
                'instances': instance_records(self.crops, self.labels, self.scores, self.class_names, masks)}

    def to_labelme(self, image_path: str, relative_to: Optional[str] = None, shape_type: str = 'polygon',
                   min_score: float = SHOWN_MIN_SCORE) -> Dict[str, Any]:
        """The labelme 5.x file of the instances scoring at least ``min_score`` (``data.labelme``), to correct
        in labelme and read back with ``tools/labelme2coco.py``: each instance labelled with its class name,
        as polygons (``shape_type``; a part each) or labelme's ``mask`` shapes (the exact pixels);
        ``imagePath`` is ``image_path`` relative to the folder ``relative_to`` where the file goes
        (default: the picture's own folder, the file beside it). Write it with ``json.dump``."""
        kept = self[self.scores >= min_score]
        where = os.path.relpath(image_path, relative_to or os.path.dirname(os.path.abspath(image_path)))
        return labelme_document(kept.crops, kept.labels, kept.scores, self.class_names, where, shape_type)

    def draw(self, image: np.ndarray, channels: str = 'bgr', min_score: float = SHOWN_MIN_SCORE) -> np.ndarray:
        """A copy of ``image`` ([H, W, 3] uint8 in ``channels`` order) with the instances
        scoring at least ``min_score`` drawn (fill, contour, caption), in the same order."""
        if check_channels(channels) == 'rgb':
            return draw_instances(image, self.crops, self.labels, self.scores, self.class_names, min_score)
        rgb = cv2.cvtColor(np.asarray(image, dtype=np.uint8), cv2.COLOR_BGR2RGB)         # the copy drawn on
        return draw_bgr(rgb, self.crops, self.labels, self.scores, self.class_names, min_score)
