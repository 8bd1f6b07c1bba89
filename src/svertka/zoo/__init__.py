"""The architecture zoo: create_model / list_models, as in timm."""
from .registry import ModelEntry, Reference, create_model, get_entry, list_models

__all__ = ["ModelEntry", "Reference", "create_model", "get_entry", "list_models"]
