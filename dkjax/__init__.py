"""dkjax: divergence-kernel linear responses and generative SDEs in JAX."""

# SDEs and simulation
from ._sde._abstract import AbstractSDE as AbstractSDE
from ._sde._abstract import parameters as parameters
from ._sde._systems import GeometricBrownianMotion as GeometricBrownianMotion
from ._sde._systems import LinearSDE as LinearSDE
from ._sde._systems import Lorenz96 as Lorenz96
from ._sde._systems import Lorenz96Multiplicative as Lorenz96Multiplicative
from ._sde._systems import OrnsteinUhlenbeck as OrnsteinUhlenbeck
from ._engine._noise import BrownianIncrements as BrownianIncrements
from ._engine._simulate import simulate as simulate
from ._engine._save_at import SaveAt as SaveAt

# The divergence-kernel estimator
from ._engine._estimator import DKResult as DKResult
from ._engine._estimator import divergence_kernel as divergence_kernel
from ._engine._kernel_rate import estimate_kernel_rate as estimate_kernel_rate

# Strategies: how Jacobians are treated, and the kernel rate
from ._engine._jacobian import AbstractJacobian as AbstractJacobian
from ._engine._jacobian import Dense as Dense
from ._engine._jacobian import MatrixFree as MatrixFree
from ._engine._kernel_rate import AbstractKernelRate as AbstractKernelRate
from ._engine._kernel_rate import AutoRate as AutoRate
from ._engine._kernel_rate import ConstantRate as ConstantRate
from ._engine._kernel_rate import RateSchedule as RateSchedule

# Linear responses and baselines
from ._response._results import DensityResponse as DensityResponse
from ._response._results import ResponseResult as ResponseResult
from ._response._results import StationaryResponse as StationaryResponse
from ._response._density import density_response as density_response
from ._response._observable import observable_response as observable_response
from ._response._stationary import stationary_response as stationary_response
from ._response._baselines import backprop_response as backprop_response
from ._response._baselines import finite_difference_response as finite_difference_response
from ._response._baselines import finite_difference_stationary as finite_difference_stationary
from ._response._baselines import likelihood_ratio_response as likelihood_ratio_response
from ._response._plots import plot_density_response as plot_density_response
from ._response._plots import plot_response_vs_parameter as plot_response_vs_parameter
from ._response._plots import plot_slope_segments as plot_slope_segments
from ._response._plots import plot_window_plateau as plot_window_plateau

# DK-SDE generative models
from ._sde._neural import NeuralSDE as NeuralSDE
from ._sde._gradient_flow import GradientFlowSDE as GradientFlowSDE
from ._generative._snapshots import EmpiricalInitial as EmpiricalInitial
from ._generative._snapshots import Snapshots as Snapshots
from ._generative._snapshot_eval import SnapshotScore as SnapshotScore
from ._generative._snapshot_eval import forecast as forecast
from ._generative._snapshot_eval import interpolate_snapshots as interpolate_snapshots
from ._generative._snapshot_eval import leave_one_time_out as leave_one_time_out
from ._generative._snapshot_eval import score_held_out as score_held_out
from ._generative._data import lorenz96_snapshots as lorenz96_snapshots
from ._generative._data import toy_data as toy_data
from ._generative._train import TrainHistory as TrainHistory
from ._generative._train import fit as fit
from ._generative._objective import AbstractObjective as AbstractObjective
from ._generative._objective import Energy as Energy
from ._generative._objective import KL as KL
from ._generative._path_cost import AbstractPathCost as AbstractPathCost
from ._generative._path_cost import Kinetic as Kinetic
from ._generative._path_schedule import AbstractPathSchedule as AbstractPathSchedule
from ._generative._path_schedule import ConstantPaths as ConstantPaths
from ._generative._path_schedule import GrowingPaths as GrowingPaths
from ._generative._gradient import AbstractGradient as AbstractGradient
from ._generative._gradient import AutoGradient as AutoGradient
from ._generative._gradient import PerPathGradient as PerPathGradient
from ._generative._gradient import TwoPassGradient as TwoPassGradient
from ._generative._model import sample as sample
from ._generative._settings import TRAIN_DEFAULTS as TRAIN_DEFAULTS
from ._generative._settings import TrainSettings as TrainSettings
from ._generative._data import GaussianInitial as GaussianInitial
from ._generative._model import DataScaling as DataScaling
from ._generative._discrete import DiscreteColumns as DiscreteColumns
from ._generative._model import GenerativeModel as GenerativeModel
from ._generative._model import fit_generative as fit_generative
from ._generative._model import load_model as load_model
from ._generative._model import save_model as save_model
from ._generative._metrics import energy_distance as energy_distance
from ._generative._plots import plot_snapshots as plot_snapshots
from ._generative._metrics import sliced_wasserstein as sliced_wasserstein
from ._generative._metrics import smoothed_nll as smoothed_nll
from ._generative._snapshot_eval import PushForwardScore as PushForwardScore
from ._generative._snapshot_eval import push_forward_score as push_forward_score
from ._generative._snapshot_eval import wasserstein1 as wasserstein1

# Scale-out
from ._engine._sharding import host_path_offset as host_path_offset
from ._engine._sharding import path_mesh as path_mesh
from ._engine._sharding import shard_paths as shard_paths
from ._engine._sharding import sharded_initial as sharded_initial

__version__ = "0.1.0"
