"""Typed errors for medkt.

Every error a user can trigger is a :class:`MedktError` subclass whose message names
*what* went wrong, *where* (file, option, model name) and *how to fix it*.  The CLI
prints the message without a traceback and exits with :attr:`MedktError.exit_code`.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class MedktError(Exception):
    """Base class of all user-facing medkt errors."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None, path: str | None = None):
        self.message = message
        self.hint = hint
        self.path = str(path) if path is not None else None
        super().__init__(self.format())

    def format(self) -> str:
        parts = []
        if self.path:
            parts.append(f"{self.path}: ")
        parts.append(self.message)
        if self.hint:
            parts.append(f"\n  fix: {self.hint}")
        return "".join(parts)


class ConfigError(MedktError):
    """A config file or option is invalid (unknown key, wrong type, bad value)."""


class UnknownNameError(ConfigError):
    """A name (model, mode, preset, dataset...) is not registered."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], *, hint: str | None = None):
        choices = sorted(choices)
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
        msg = f"unknown {kind} '{name}'."
        if close:
            msg += f" Did you mean: {', '.join(close)}?"
        super().__init__(msg, hint=hint or f"choose one of: {', '.join(choices)}")
        self.name = name
        self.choices = choices


class WeightsError(MedktError):
    """Model weights are missing, corrupt or do not match the architecture."""


class WeightsMissingError(WeightsError):
    """Weights for a named model are not available locally (and we are offline)."""


class CheckpointMismatchError(WeightsError):
    """A checkpoint's keys or shapes do not match the model it is loaded into."""


class CapabilityError(MedktError):
    """The model family does not support the requested operation (e.g. captioning on CLIP)."""


class InputError(MedktError):
    """An input file or folder cannot be read or is not valid for the operation."""


class GeometryError(InputError):
    """Image geometry is unsupported or inconsistent (gantry tilt, irregular spacing, ...)."""


class InputTooLargeError(InputError):
    """A header claims more voxels / bytes than the size limit (``--max-voxels``); nothing was allocated."""


class DecoderMissingError(InputError):
    """A compressed DICOM transfer syntax needs a pixel-data plugin that is not installed."""


class OutputError(MedktError):
    """An output path is unsafe (inside the input tree, exists without --overwrite, ...)."""


class DicomSegError(OutputError):
    """highdicom cannot build a DICOM-SEG from the source headers (e.g. a multi-valued PatientName);
    callers that hold the mask fall back to NIfTI."""


class OptionalDependencyError(MedktError):
    """An optional package is needed for this feature but is not installed."""

    def __init__(self, package: str, feature: str, extra: str | None = None):
        install = f"pip install 'medkt[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the optional package '{package}', which is not installed.",
                         hint=install)
        self.package = package


def look_up(kind: str, name: str, registry: dict):
    """Return ``registry[name]`` or raise :class:`UnknownNameError` with close matches."""
    try:
        return registry[name]
    except KeyError:
        raise UnknownNameError(kind, name, registry.keys()) from None


class ResumeMismatchError(ConfigError):
    """``--resume`` found results made with a different model, weights or settings."""
