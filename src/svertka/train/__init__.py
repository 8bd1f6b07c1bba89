"""Training: one loop for both backends, checkpoints, metrics, evaluation.

    from svertka.train import make_config, train
    result = train(make_config({"model": "lenet5", "epochs": 2}))
"""
from ..zoo import resolve_model
from .config import TrainConfig, list_recipes, load_recipe, make_config
from .loop import RunResult, resume_config, train
from .schedule import Schedule

__all__ = ["TrainConfig", "make_config", "load_recipe", "list_recipes", "train", "resume_config", "RunResult",
           "Schedule", "resolve_model"]
