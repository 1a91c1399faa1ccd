"""BatchNorm2D(num_features, eps, momentum): NHWC images normalised per channel over (m, H, W) with the
batch's statistics (training) or the running ones (eval); params gamma, beta; buffers running_mean,
running_var. A batch of one image has H*W values per channel: it trains."""

from reference.layers import batchnorm

NAME = "BatchNorm2D"
SHAPES = [(2, 4, 4, 3), (1, 3, 5, 2), (3, 2, 3, 4), (2, 6, 6, 1)]
KIND = batchnorm.kind(NAME, "BatchNorm2d", 4, SHAPES, ((2, 4, 4, 3), (3, 5, 6, 3)), 900, images=True)
