"""Evaluation: a flow's test figure, the run it was trained in, its pictures.

    evaluator.py  Evaluator (mean NLL under a strategy), restore_flow, evaluate
    figures.py    sample grids, 2-D density plots, the samples of a run, the
                  manifold of latents, the picture of a scored set
    scoring.py    per-example scores (likelihood, complexity-corrected), AUROC,
                  the typicality test, score_run (`evaluate.py --score`)
"""

from tf_realnvp.evaluation import scoring
from tf_realnvp.evaluation.evaluator import evaluate
from tf_realnvp.evaluation.evaluator import Evaluator
from tf_realnvp.evaluation.evaluator import restore_flow
from tf_realnvp.evaluation.figures import write_samples

__all__ = [
    'evaluate', 'Evaluator', 'restore_flow', 'scoring', 'write_samples',
]
