"""The published checkpoints this project takes by name (``mmdet/solov2_r50_fpn_1x_coco``: the
publisher's prefix and own model name), one ``Published`` row per file: ``convert.zoo`` fetches them,
docs/checkpoints.md's tables are generated from them (``tools/dev/zoo_docs.py``). Every fact was read
from the page in its publisher's ``checked``, never guessed: a checksum is only what a publisher
prints, None where none is or it could not be read (UNVERIFIED in the row's note).

``FAMILIES``: ``solov2 convert FAMILY`` -> its script in a checkout, the one list of converter families (a row's
``family``; ``convert.families.CONVERTERS`` converts each but the way back, ``convert.to_ppdet``).

``PUBLISHED`` holds the rows by family: the COCO models of the original SOLO (Hugging Face is the SOLO README's
own link since f4cd03b), PaddleDetection 2.x and 0.5 and mmdetection 2.x / 3.x (3.x reuses the 2.x files; the
2.x metafile names), then the ImageNet backbones for ``pretrained=`` (torchvision IMAGENET1K_V1, what
mmdetection starts from; PaddleClas / PaddleDetection ResNets), last the model shipped with this project."""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

FAMILIES = {'solo': 'convert/solo2paddle.py', 'ppdet': 'convert/ppdet2paddle.py',
            'ppdet-static': 'convert/ppdet_static2paddle.py', 'mmdet': 'convert/mmdet2paddle.py',
            'paddleclas': 'convert/paddleclas2paddle.py', 'torchvision': 'convert/torchvision2paddle.py',
            'to-ppdet': 'convert/paddle2ppdet.py'}
SHIPPED = 'shipped'     # the family of the model shipped in weights/: nothing to download or convert
HF_SOLO = 'https://huggingface.co/xinlongwang/SOLO/resolve/main/'
PPDET = 'https://paddledet.bj.bcebos.com/models/'
PPDET05 = 'https://paddlemodels.bj.bcebos.com/object_detection/'
MMDET = 'https://download.openmmlab.com/mmdetection/v2.0/solov2/'
TORCHVISION = 'https://download.pytorch.org/models/'
PADDLECLAS = 'https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/'


@dataclass(frozen=True)
class Publisher:
    """Who publishes a group of rows: ``title`` (a docs heading), ``page`` (where the rows
    are listed), ``checked`` (the exact versions the rows were read from) and ``licence``."""
    title: str
    page: str
    checked: str
    licence: str


@dataclass(frozen=True)
class Published:
    """One published checkpoint: ``family`` its converter (``FAMILIES``), ``url`` the publisher's
    link, ``config`` the config it converts to (a backbone: whose backbone it fills; None: not
    converted here, ``note`` says why), ``mask_ap`` the published COCO val2017 mask AP and ``top1``
    the ImageNet top-1 (percent), ``sha256`` the digest or its published leading characters,
    ``size_mb`` the published size, ``mirrors`` other published URLs of the file."""
    name: str
    family: str
    url: str
    config: Optional[int]
    mask_ap: Optional[float] = None
    top1: Optional[float] = None
    sha256: Optional[str] = None
    size_mb: Optional[float] = None
    mirrors: Tuple[str, ...] = ()
    note: str = ''

    @property
    def publisher(self) -> str:
        return self.name.split('/')[0]

    @property
    def file(self) -> str:
        """The file name, the same at the publisher and on every mirror."""
        return self.url.rsplit('/', 1)[-1]

    @property
    def backbone(self) -> bool:
        """An ImageNet backbone (for ``pretrained``), not a COCO model."""
        return self.family in ('torchvision', 'paddleclas')

    @property
    def licence(self) -> str:
        return PUBLISHERS[self.publisher].licence


def mmdet(model: str, stamp: str, config: int, mask_ap: float, name_3x: Optional[str] = '') -> Published:
    """An mmdetection row: its file is ``<model>/<model>_<stamp>.pth``, the stamp ending in the
    first 8 hex characters of the SHA-256; ``name_3x`` its name in the 3.x metafile ('': the same, None: not there)."""
    note = 'not in the 3.x metafile (its README lists it)' if name_3x is None else name_3x and f'3.x name {name_3x}'
    return Published(f'mmdet/{model}', 'mmdet', f'{MMDET}{model}/{model}_{stamp}.pth', config, mask_ap=mask_ap,
                     sha256=stamp[-8:], note=note)


def solo(file: str, config: Optional[int], mask_ap: float, size_mb: float, sha256: Optional[str] = None,
         note: str = '') -> Published:
    """An original SOLO row: its file ``<file>.pth`` on Hugging Face, its name ``file`` in lower case; a row
    without ``sha256`` says so in its note (its Hugging Face page could not be read)."""
    note = note or ('' if sha256 else 'SHA-256 UNVERIFIED (its Hugging Face page could not be read)')
    return Published(f'solo/{file.lower()}', 'solo', f'{HF_SOLO}{file}.pth', config, mask_ap=mask_ap, size_mb=size_mb,
                     sha256=sha256, note=note)


PUBLISHERS: Dict[str, Publisher] = {
    'solo': Publisher(
        'Original SOLO release (WXinlong/SOLO, mmdetection 1.x, .pth)',
        'https://github.com/WXinlong/SOLO#models',
        'WXinlong/SOLO README.md "Models" at f4cd03b (2023-12-26, whose links go to Hugging Face); SHA-256 and '
        'sizes from the Git LFS pointers of huggingface.co/xinlongwang/SOLO at 4d60d2e',
        'SOLO licence: 2-clause BSD for academic use; commercial use: contact the authors'),
    'ppdet': Publisher(
        'PaddleDetection 2.x model zoo (dygraph .pdparams)',
        'https://github.com/PaddlePaddle/PaddleDetection/blob/develop/configs/solov2/README.md',
        'PaddlePaddle/PaddleDetection configs/solov2/README.md and *.yml at develop 666f597 (README last '
        'changed 4f96dc2; the same rows on release/2.2 to 2.7.1); no checksum or size is published',
        'Apache-2.0'),
    'ppdet05': Publisher(
        'PaddleDetection 0.5 (static graph .pdparams)',
        'https://github.com/PaddlePaddle/PaddleDetection/blob/release/0.5/configs/solov2/README.md',
        'PaddlePaddle/PaddleDetection configs/solov2/README.md and *.yml at release/0.5 ed2ffa0 (the same '
        'links in static/configs/solov2/README.md on release/2.0 to 2.4); no checksum or size is published',
        'Apache-2.0'),
    'mmdet': Publisher(
        'mmdetection 2.x / 3.x model zoo (.pth)',
        'https://github.com/open-mmlab/mmdetection/blob/v2.28.2/configs/solov2/metafile.yml',
        'open-mmlab/mmdetection configs/solov2/metafile.yml at da7301b (= the mmdet 2.28.2 wheel) and the 3.x '
        'README at 5f4ef0f; the 3.x metafile (19bceba, = the 3.3.0 wheel) lacks R-101 and light R-34, so the '
        '2.x names are used. The file names end in the first 8 hex characters of the SHA-256 '
        '(tools/model_converters/publish_model.py)',
        'Apache-2.0'),
    'torchvision': Publisher(
        'torchvision ImageNet ResNets (.pth, backbone only)',
        'https://github.com/pytorch/vision/blob/main/torchvision/models/resnet.py',
        'ResNet*_Weights.IMAGENET1K_V1 in the torchvision 0.19.1 and 0.29.1 wheels (model_urls in 0.10.0), '
        "what mmdetection's torchvision://resnetNN loads (mmengine 0.10.7 hub/torchvision_0.12.json); the "
        'file names end in the first 8 hex characters of the SHA-256 (torch.hub check_hash)',
        'BSD-3-Clause (torchvision); the weights may carry terms of ImageNet'),
    'openmmlab': Publisher(
        'OpenMMLab ImageNet ResNeXt (.pth, backbone only)',
        'https://github.com/open-mmlab/mmengine/blob/main/mmengine/hub/openmmlab.json',
        'mmengine 0.10.7 wheel, mmengine/hub/openmmlab.json (what open-mmlab://resnext101_64x4d loads)',
        'not stated next to the file (UNVERIFIED)'),
    'paddleclas': Publisher(
        'PaddleClas ImageNet ResNets (.pdparams, backbone only)',
        'https://github.com/PaddlePaddle/PaddleClas/blob/develop/docs/en/models/ResNet_and_vd_en.md',
        'PaddlePaddle/PaddleClas ppcls/arch/backbone/legendary_models/resnet.py MODEL_URLS and the ResNet docs '
        'at develop d178931 and release/2.0 3384dca, and the pretrain_weights of the PaddleDetection SOLOv2 configs; '
        'no checksum or size is published. Whether these files hold the static names convert/paddleclas2paddle.py '
        'reads (conv1_1_weights, res2a_branch2a_weights) is UNVERIFIED: a file with other names is refused in one line',
        'Apache-2.0'),
    SHIPPED: Publisher(
        'The shipped model',
        '',
        'this repository: weights/shapes_r18.pdparams and its sidecar',
        "Apache-2.0, this repository's LICENSE"),
}

PUBLISHED: Tuple[Published, ...] = (
    solo('SOLOv2_R50_1x', 0, 34.8, 372, '17e10fe2198665c573b363c504a1547e6a917e22fa94e926d7f8646432d8a506'),
    solo('SOLOv2_R50_3x', 0, 37.5, 372, '659975203266ca2d00167790796fde961d09930c01124377d3ee3a8be3a3a660'),
    solo('SOLOv2_R101_3x', 8, 39.1, 524, '7126c25eee6575ef405fc689b46510493b4dc991ebf758a12645109ed906c55f'),
    solo('SOLOv2_LIGHT_448_R18_3x', 5, 29.6, 146, '4f89669be79143566e02bdc51428fc10c83a3974a53326fcae1cf7e336dc6997'),
    solo('SOLOv2_LIGHT_448_R34_3x', 6, 32.0, 226, '9243f7b9e64e4ae0a77517fed392a7f170ab3e5cad7028caa7b062c34d87d3c5'),
    solo('SOLOv2_LIGHT_448_R50_3x', 1, 33.7, 250),
    solo('SOLOv2_LIGHT_512_DCN_R50_3x', 7, 36.4, 265),
    solo('SOLOv2_R101_DCN_3x', None, 41.4, 550, '3cd436711e57047bf00a733fb606262097b4eff7121d3251305aeab3ccc249c5',
         'use mmdet/solov2_r101_dcn_fpn_3x_coco (config 10)'),
    solo('SOLOv2_X101_DCN_3x', None, 42.4, 907, 'e0ef1edcb04d4e468b5bd7cc63d8de4d8267402ee180679c6c0ddbeda51f7d46',
         'use mmdet/solov2_x101_dcn_fpn_3x_coco (config 12)'),
    Published('ppdet/solov2_r50_fpn_1x_coco', 'ppdet', PPDET + 'solov2_r50_fpn_1x_coco.pdparams', 0, mask_ap=35.5),
    Published('ppdet/solov2_r50_fpn_3x_coco', 'ppdet', PPDET + 'solov2_r50_fpn_3x_coco.pdparams', 0, mask_ap=38.0),
    Published('ppdet/solov2_r101_vd_fpn_3x_coco', 'ppdet', PPDET + 'solov2_r101_vd_fpn_3x_coco.pdparams', 4,
              mask_ap=42.7),
    Published('ppdet/solov2_r50_enhance_coco', 'ppdet', PPDET + 'solov2_r50_enhance_coco.pdparams', 3, mask_ap=39.0,
              note='Light-R50-VD-DCN-FPN, 512'),
    Published('ppdet05/solov2_r50_fpn_1x', 'ppdet-static', PPDET05 + 'solov2_r50_fpn_1x.pdparams', 0, mask_ap=35.6),
    Published('ppdet05/solov2_r50_fpn_3x', 'ppdet-static', PPDET05 + 'solov2_r50_fpn_3x.pdparams', 0, mask_ap=37.9),
    Published('ppdet05/solov2_light_r50_vd_fpn_dcn_512_3x', 'ppdet-static',
              PPDET05 + 'solov2_light_r50_vd_fpn_dcn_512_3x.pdparams', 2, mask_ap=38.8),
    Published('ppdet05/solov2_r101_vd_fpn_3x', 'ppdet-static', PPDET05 + 'solov2_r101_vd_fpn_3x.pdparams', None,
              mask_ap=42.6, note='its deformable head convs have no bias, unlike config 4; use '
                                 'ppdet/solov2_r101_vd_fpn_3x_coco (config 4)'),
    Published('ppdet05/solov2_mobilenetv3_fpn_448_3x', 'ppdet-static',
              PPDET05 + 'solov2_mobilenetv3_fpn_448_3x.pdparams', None, mask_ap=30.0,
              note='no MobileNetV3 config here'),
    mmdet('solov2_r50_fpn_1x_coco', '20220512_125858-a357fa23', 0, 34.8),
    mmdet('solov2_r50_fpn_3x_coco', '20220512_125856-fed092d4', 0, 37.5, 'solov2_r50_fpn_ms-3x_coco'),
    mmdet('solov2_r101_fpn_3x_coco', '20220511_095119-c559a076', 8, 39.1, None),
    mmdet('solov2_r101_dcn_fpn_3x_coco', '20220513_214734-16c966cb', 10, 41.2, 'solov2_r101-dcn_fpn_ms-3x_coco'),
    mmdet('solov2_x101_dcn_fpn_3x_coco', '20220513_214337-aef41095', 12, 42.4, 'solov2_x101-dcn_fpn_ms-3x_coco'),
    mmdet('solov2_light_r18_fpn_3x_coco', '20220511_083717-75fa355b', 5, 29.7, 'solov2-light_r18_fpn_ms-3x_coco'),
    mmdet('solov2_light_r34_fpn_3x_coco', '20220511_091839-e51659d3', 6, 31.9, None),
    mmdet('solov2_light_r50_fpn_3x_coco', '20220512_165256-c93a6074', 1, 33.7, 'solov2-light_r50_fpn_ms-3x_coco'),
    Published('torchvision/resnet18', 'torchvision', TORCHVISION + 'resnet18-f37072fd.pth', 5, top1=69.758,
              sha256='f37072fd', size_mb=44.661, note='the original SOLO started from the legacy resnet18-5c106cde.pth '
                                                      '(same weights)'),
    Published('torchvision/resnet34', 'torchvision', TORCHVISION + 'resnet34-b627a593.pth', 6, top1=73.314,
              sha256='b627a593', size_mb=83.275, note='legacy file resnet34-333f7ec4.pth (same weights)'),
    Published('torchvision/resnet50', 'torchvision', TORCHVISION + 'resnet50-0676ba61.pth', 0, top1=76.130,
              sha256='0676ba61', size_mb=97.781, note='also fits config 1; legacy file resnet50-19c8e357.pth (same '
                                                      'weights); not IMAGENET1K_V2 (resnet50-11ad3fa6.pth)'),
    Published('torchvision/resnet101', 'torchvision', TORCHVISION + 'resnet101-63fe2227.pth', 8, top1=77.374,
              sha256='63fe2227', size_mb=170.511, note="also mmdetection's R101-DCN start (config 10); legacy file "
                                                       'resnet101-5d3b4d8f.pth (same weights)'),
    Published('openmmlab/resnext101_64x4d', 'torchvision',
              'https://download.openmmlab.com/pretrain/third_party/resnext101_64x4d-ee2c6f71.pth', 12,
              mirrors=('https://s3.ap-northeast-2.amazonaws.com/open-mmlab/pretrain/third_party/'
                       'resnext101_64x4d-ee2c6f71.pth',),
              note='the X101-DCN start of mmdetection and SOLO; the suffix ee2c6f71 is presumably a SHA-256 prefix '
                   '(UNVERIFIED, so not checked); conversion with convert/torchvision2paddle.py UNVERIFIED'),
    Published('ppdet/resnet50_cos', 'paddleclas', PPDET + 'pretrained/ResNet50_cos_pretrained.pdparams', 0,
              note='the start of the ppdet r50 1x/3x configs (2.x and 0.5)'),
    Published('paddleclas/resnet50_vd', 'paddleclas', PADDLECLAS + 'legendary_models/ResNet50_vd_pretrained.pdparams',
              2, top1=79.1),
    Published('paddleclas/resnet50_vd_ssld', 'paddleclas', PADDLECLAS + 'ResNet50_vd_ssld_pretrained.pdparams', 2,
              top1=82.4, note='the start of ppdet05/solov2_light_r50_vd_fpn_dcn_512_3x (its .tar)'),
    Published('paddleclas/resnet50_vd_ssld_v2', 'paddleclas',
              PPDET + 'pretrained/ResNet50_vd_ssld_v2_pretrained.pdparams', 3, top1=83.0,
              note='the start of ppdet/solov2_r50_enhance_coco'),
    Published('paddleclas/resnet101_vd', 'paddleclas', PPDET + 'pretrained/ResNet101_vd_pretrained.pdparams', 4,
              top1=80.2, note='the start of ppdet/solov2_r101_vd_fpn_3x_coco'),
    Published('paddleclas/resnet50', 'paddleclas', PADDLECLAS + 'legendary_models/ResNet50_pretrained.pdparams', 0,
              top1=76.5),
    Published('paddleclas/resnet101', 'paddleclas', PADDLECLAS + 'legendary_models/ResNet101_pretrained.pdparams', 8,
              top1=77.6),
    Published('shipped/shapes_r18', SHIPPED, 'weights/shapes_r18.pdparams', 9, size_mb=3.8,
              note='trained here from scratch on the synthetic shapes set (4 classes): mask AP 74.7 on its val split'),
)
