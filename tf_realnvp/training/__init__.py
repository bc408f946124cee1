"""Training: the optimizer, the strategies, the compiled step and the loop."""

from tf_realnvp.training.loop import train_and_evaluate
from tf_realnvp.training.loop import Training
from tf_realnvp.training.loop import TrainingDivergedError
from tf_realnvp.training.loop import TrainingInterrupted
from tf_realnvp.training.step import check_batches
from tf_realnvp.training.step import TrainStep

__all__ = [
    'check_batches', 'train_and_evaluate', 'Training', 'TrainingDivergedError',
    'TrainingInterrupted', 'TrainStep',
]
