"""RealNVP normalizing flows (Dinh, Sohl-Dickstein, Bengio, ICLR 2017) in TFP.

The names below are imported on first use (PEP 562), so that
`from tf_realnvp import console` does not import TensorFlow: the entry
scripts set TensorFlow's C++ log level first, which it reads on import.
"""

import importlib

# Name -> the module that defines it; the submodules are the names of `__all__`
# not listed here.
_DEFINED_IN = {
    'RealNVP': 'distribution', 'couplings': 'distribution',
    'weight_scale_l2': 'distribution', 'with_temperature': 'distribution',
    'dequantize': 'data', 'make_flow': 'flows',
    'bits_per_dim': 'metrics', 'FlowModel': 'keras_model',
}

__all__ = [
    'FlowModel', 'RealNVP', 'bijectors', 'bits_per_dim', 'couplings', 'data',
    'dequantize', 'flows', 'make_flow', 'mode', 'networks', 'objective',
    'optimizers', 'weight_scale_l2', 'with_temperature',
]


def __getattr__(name):
  if name not in __all__:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  if name in _DEFINED_IN:
    return getattr(importlib.import_module(f'{__name__}.{_DEFINED_IN[name]}'),
                   name)
  return importlib.import_module(f'{__name__}.{name}')
