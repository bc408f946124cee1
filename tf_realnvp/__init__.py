"""RealNVP normalizing flows (Dinh, Sohl-Dickstein, Bengio, 2017) in TFP."""

import importlib

# Name -> the module that defines it. The packages and modules of `__all__`
# not listed here are this package's own.
_DEFINED_IN = {
    'RealNVP': 'flows.realnvp', 'couplings': 'flows.flow',
    'weight_scale_l2': 'flows.flow', 'with_temperature': 'flows.flow',
    'make_flow': 'flows.registry', 'bits_per_dim': 'flows.objective',
    'loss': 'flows.objective',
    'dequantize': 'data', 'FlowModel': 'serving.keras_model',
}

__all__ = [
    'FlowModel', 'RealNVP', 'bijectors', 'bits_per_dim', 'config',
    'couplings', 'data', 'dequantize', 'evaluation', 'flows', 'loss',
    'make_flow', 'networks', 'serving', 'training', 'training_mode',
    'weight_scale_l2', 'with_temperature',
]


# The names above are imported on first use (PEP 562), so that
# `from tf_realnvp import console` does not import TensorFlow: the entry
# scripts set TensorFlow's C++ log level first, which it reads on import.
def __getattr__(name):
  if name in _DEFINED_IN:
    return getattr(importlib.import_module(f'{__name__}.{_DEFINED_IN[name]}'),
                   name)
  if name in __all__:
    return importlib.import_module(f'{__name__}.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
