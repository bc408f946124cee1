"""RealNVP bijectors, composable with `tfp.bijectors`: data to latent."""

from tf_realnvp.bijectors.actnorm import ActNorm
from tf_realnvp.bijectors.affine_coupling import AffineCoupling
from tf_realnvp.bijectors.batch_norm import BatchNorm
from tf_realnvp.bijectors.factor_out import FactorOut
from tf_realnvp.bijectors.invertible_conv import InvertibleConv1x1
from tf_realnvp.bijectors.logit import LogitPreprocessing
from tf_realnvp.bijectors.masks import alternating_mask
from tf_realnvp.bijectors.masks import channel_mask
from tf_realnvp.bijectors.masks import checkerboard_mask
from tf_realnvp.bijectors.one_pass import OnePassBijector
from tf_realnvp.bijectors.reversible import Reversible
from tf_realnvp.bijectors.spline_coupling import SplineCoupling
from tf_realnvp.bijectors.squeeze import Squeeze
from tf_realnvp.bijectors.variational_dequantization import (
    VariationalDequantization)

__all__ = [
    'ActNorm', 'AffineCoupling', 'BatchNorm', 'FactorOut', 'InvertibleConv1x1',
    'LogitPreprocessing', 'OnePassBijector', 'Reversible', 'SplineCoupling',
    'Squeeze', 'VariationalDequantization', 'alternating_mask',
    'channel_mask', 'checkerboard_mask',
]
