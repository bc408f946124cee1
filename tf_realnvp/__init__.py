"""RealNVP normalizing flows (Dinh, Sohl-Dickstein, Bengio, ICLR 2017) in TFP."""

from tf_realnvp import bijectors
from tf_realnvp import flows
from tf_realnvp import mode
from tf_realnvp import networks
from tf_realnvp import optimizers
from tf_realnvp.dequantization import dequantize
from tf_realnvp.distribution import RealNVP
from tf_realnvp.distribution import couplings
from tf_realnvp.distribution import weight_scale_l2
from tf_realnvp.distribution import with_temperature
from tf_realnvp.flows import make_flow
from tf_realnvp.metrics import bits_per_dim

__all__ = [
    'RealNVP', 'bijectors', 'bits_per_dim', 'couplings', 'dequantize',
    'flows', 'make_flow', 'mode', 'networks', 'optimizers', 'weight_scale_l2',
    'with_temperature',
]
