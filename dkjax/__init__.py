"""dkjax: divergence-kernel linear responses and generative SDEs in JAX."""

from ._estimator import DKResult as DKResult
from ._estimator import divergence_kernel as divergence_kernel
from ._kernel_rate import estimate_kernel_rate as estimate_kernel_rate
from ._neural import NeuralSDE as NeuralSDE
from ._noise import BrownianIncrements as BrownianIncrements
from ._sde import AbstractSDE as AbstractSDE
from ._sde import parameters as parameters
from ._simulate import simulate as simulate
from ._systems import GeometricBrownianMotion as GeometricBrownianMotion
from ._systems import LinearSDE as LinearSDE
from ._systems import Lorenz96 as Lorenz96
from ._systems import Lorenz96Multiplicative as Lorenz96Multiplicative
from ._systems import OrnsteinUhlenbeck as OrnsteinUhlenbeck

__version__ = "0.1.0"
