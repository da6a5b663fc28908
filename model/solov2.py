"""SOLOv2 assembly: backbone -> FPN -> (instance head, mask-feature head)."""
from typing import Dict, List, Optional, Union

import paddle
import paddle.nn as nn

from solov2.model.fpn import FPN
from solov2.model.layers import spatial_size
from solov2.model.mask_feat_head import MaskFeatHead
from solov2.model.region import Region
from solov2.model.resnet import ResNet
from solov2.model.solov2_head import SOLOv2Head


class SOLOv2(nn.Layer):
    """The network. ``forward`` returns raw outputs in every mode and keeps no state:
    the loss (training) and ``model.inference.postprocess`` (inference) are separate calls."""

    def __init__(self, backbone: ResNet, neck: FPN, head: SOLOv2Head, mask_head: MaskFeatHead):
        super().__init__()
        self.backbone, self.neck, self.head, self.mask_head = backbone, neck, head, mask_head

    def forward(self, images: paddle.Tensor, regions: Optional[paddle.Tensor] = None
                ) -> Dict[str, Union[paddle.Tensor, List[paddle.Tensor]]]:
        """images [B, 3, H, W] normalised, H and W multiples of 32 -> ``cate_logits`` [B, C, S, S] x 5,
        ``kernels`` [B, E, S, S] x 5, ``mask_feat`` [B, E, H/4, W/4]. ``regions`` [B, 2] int64: each
        image's own input size at the top left, computed as alone (``model.region``); ``mask_feat``
        is then [B, E, Hr/4, Wr/4] for the largest region Hr x Wr."""
        region = None if regions is None else Region(spatial_size(images), regions)
        pyramid = self.neck(self.backbone(images, region), region)
        if region is not None:
            pyramid = [region.crop(level, stride) for level, stride in zip(pyramid, self.neck.strides)]
        cate_logits, kernels = self.head(pyramid, region)
        mask_feat = self.mask_head(pyramid[:len(self.mask_head.levels)], region)
        return {'cate_logits': cate_logits, 'kernels': kernels, 'mask_feat': mask_feat}
