"""A trained flow outside the training loop: the SavedModel that runs without
this package, and the Keras model.

    saved_model.py  export_saved_model: log_prob, sample, encode and decode
                    as functions and serving signatures
    keras_model.py  FlowModel: a keras.Model around any flow
"""

from tf_realnvp.serving.keras_model import FlowModel
from tf_realnvp.serving.saved_model import export_saved_model

__all__ = [
    'export_saved_model', 'FlowModel',
]
