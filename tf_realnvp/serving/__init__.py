"""A trained flow outside the training loop: SavedModel, TFLite, ONNX, Keras."""

from tf_realnvp.serving.keras_model import FlowModel
from tf_realnvp.serving.portable import export_portable
from tf_realnvp.serving.saved_model import export_saved_model

__all__ = [
    'export_portable', 'export_saved_model', 'FlowModel',
]
