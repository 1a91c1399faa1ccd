"""BatchNorm1D(num_features, eps, momentum): rows (m, n) normalised per feature with the batch's
statistics (training) or the running ones (eval); params gamma, beta; buffers running_mean, running_var."""

from reference.layers import batchnorm

NAME = "BatchNorm1D"
# batches of one and two in eval mode only (batchnorm.trains says why)
SHAPES = [(4, 3), (8, 5), (3, 1), (16, 4), (1, 3), (2, 4)]
KIND = batchnorm.kind(NAME, "BatchNorm1d", 2, SHAPES, ((4, 3), (6, 3)), 800, images=False)
