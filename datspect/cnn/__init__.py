"""The study's deep CNN: model, data/augmentation, training and checkpoints."""

from datspect.cnn.checkpoint import load_checkpoint, save_checkpoint
from datspect.cnn.data import ImageDataset, load_items, make_input_spec
from datspect.cnn.model import build_model, count_parameters
from datspect.cnn.train import predict, train_model

__all__ = [
    "ImageDataset",
    "build_model",
    "count_parameters",
    "load_checkpoint",
    "load_items",
    "make_input_spec",
    "predict",
    "save_checkpoint",
    "train_model",
]
