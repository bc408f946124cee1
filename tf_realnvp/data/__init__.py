"""The data layer: where examples come from, and the stream of batches."""

from tf_realnvp.data.catalog import describe
from tf_realnvp.data.pipeline import batches
from tf_realnvp.data.pipeline import make_dataset
from tf_realnvp.data.pipeline import split_batches
from tf_realnvp.data.preprocessing import dequantize
from tf_realnvp.data.sources import DataError
from tf_realnvp.data.sources import DatasetUnavailableError
from tf_realnvp.data.sources import Source
from tf_realnvp.data.sources import Split
from tf_realnvp.data.sources import SPLITS
from tf_realnvp.data.toys import eight_gaussians_means
from tf_realnvp.data.toys import sample_toy
from tf_realnvp.data.toys import TOY_DATASETS
from tf_realnvp.data.toys import toy_log_prob_8gaussians
from tf_realnvp.data.toys import TOY_SPLITS

__all__ = [
    'DataError', 'DatasetUnavailableError', 'SPLITS', 'Source', 'Split',
    'TOY_DATASETS', 'TOY_SPLITS', 'batches', 'dequantize', 'describe',
    'eight_gaussians_means', 'make_dataset', 'sample_toy', 'split_batches',
    'toy_log_prob_8gaussians',
]
