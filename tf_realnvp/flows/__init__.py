"""Flows: `Flow`, RealNVP, the flows it is compared with, the objective."""

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
