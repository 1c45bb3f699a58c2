"""Training MF-CHGNet: config, data, trainer, baselines (paper sections 2-3).

``TrainConfig`` (paper Table 1 defaults), ``FrameDataset`` (frames + fidelity names, graphs cached),
``Trainer`` (fit / resume / data-parallel), ``build_model``, ``evaluate`` (per-fidelity MAE/RMSE),
``train_multi_fidelity`` (what ``mf-calc train`` does), baselines ``train_single_fidelity``,
``train_transfer``, ``train_delta`` + ``DeltaModel``,
``teacher_frames`` (model-labelled frames for tests and benchmarks).
"""

from mf_calc.train.baselines import DeltaModel, train_delta, train_multi_fidelity, train_single_fidelity, train_transfer
from mf_calc.train.config import TrainConfig
from mf_calc.train.dataset import FrameDataset
from mf_calc.train.metrics import evaluate
from mf_calc.train.model_setup import TRANSFER_FROZEN, build_model, freeze
from mf_calc.train.teacher import teacher_frames
from mf_calc.train.trainer import Trainer

__all__ = ["DeltaModel", "FrameDataset", "TRANSFER_FROZEN", "TrainConfig", "Trainer", "build_model", "evaluate",
           "freeze", "teacher_frames", "train_delta", "train_multi_fidelity", "train_single_fidelity", "train_transfer"]
