"""The shipped world models now live in the model layer (:mod:`medkt.models.world_models`);
this module re-exports :func:`world_weights` for older imports."""
from medkt.models.world_models import world_weights  # noqa: F401

__all__ = ["world_weights"]
