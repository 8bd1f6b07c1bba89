"""The architecture zoo: create_model / list_models, as in timm, and
resolve_model for what a user types (a zoo name or a JSON network file)."""
from .registry import ModelEntry, Reference, create_model, get_entry, list_models, register_model
from .resolve import resolve_model, resolve_spec

__all__ = ["ModelEntry", "Reference", "create_model", "get_entry", "list_models", "register_model",
           "resolve_model", "resolve_spec"]
