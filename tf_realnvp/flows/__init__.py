"""Flows: the `Flow` distribution, RealNVP's multi-scale architecture, the
flows it is compared with, the registry `make_flow`, and the objective.

    flow.py       Flow, from_data_to_latent, and what reads any flow
    realnvp.py    RealNVP(event_shape, ...): the paper's architecture
    baselines.py  MAF, IAF and FFJORD on vectors
    registry.py   FLOWS and make_flow(kind, event_shape, **settings)
    objective.py  the training loss and the unit of the reported figure
"""

from tf_realnvp.flows.flow import context_of
from tf_realnvp.flows.flow import couplings
from tf_realnvp.flows.flow import Flow
from tf_realnvp.flows.flow import from_data_to_latent
from tf_realnvp.flows.flow import log_prob
from tf_realnvp.flows.flow import sample
from tf_realnvp.flows.flow import weight_scale_l2
from tf_realnvp.flows.flow import with_temperature
from tf_realnvp.flows.realnvp import check_scales
from tf_realnvp.flows.realnvp import RealNVP
from tf_realnvp.flows.registry import FlowKind
from tf_realnvp.flows.registry import FLOWS
from tf_realnvp.flows.registry import make_flow

__all__ = [
    'check_scales', 'context_of', 'couplings', 'Flow', 'FlowKind', 'FLOWS',
    'from_data_to_latent', 'log_prob', 'make_flow', 'RealNVP', 'sample',
    'weight_scale_l2', 'with_temperature',
]
