"""A trained flow outside the training loop: the SavedModel that runs without
this package, and the Keras model.

    saved_model.py  export_saved_model: log_prob, sample, encode and decode
                    as functions and serving signatures
    portable.py     export_portable: log_prob and decode as TFLite and ONNX
                    files
    keras_model.py  FlowModel: a keras.Model around any flow
"""

from tf_realnvp.serving.keras_model import FlowModel
from tf_realnvp.serving.portable import export_portable
from tf_realnvp.serving.saved_model import export_saved_model

__all__ = [
    'export_portable', 'export_saved_model', 'FlowModel',
]
