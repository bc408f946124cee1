"""Evaluation: a flow's test figure, its run, its pictures and scores."""

from tf_realnvp.evaluation import scoring
from tf_realnvp.evaluation.evaluator import evaluate
from tf_realnvp.evaluation.evaluator import Evaluator
from tf_realnvp.evaluation.evaluator import restore_flow
from tf_realnvp.evaluation.figures import write_samples

__all__ = [
    'evaluate', 'Evaluator', 'restore_flow', 'scoring', 'write_samples',
]
