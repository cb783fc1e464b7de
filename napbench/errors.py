"""One exception hierarchy for napbench.

Every error subclasses :class:`NapbenchError` and, where a builtin fits, that builtin too,
so ``except ValueError`` keeps working for callers that do not know napbench.
Messages say what was found and what was expected.
"""

from __future__ import annotations


class NapbenchError(Exception):
    """Base class of every napbench error."""


class InvalidGraphError(NapbenchError, ValueError):
    """A computation graph violates an invariant (cycle, dangling node, shape mismatch, ...)."""


class UnsupportedOpError(NapbenchError, ValueError):
    """A frontend met an op that the vocabulary has no mapping for."""

    def __init__(self, op: str, frontend: str, detail: str = "") -> None:
        self.op = op
        self.frontend = frontend
        msg = (
            f"{frontend} op {op!r} is not in the napbench op vocabulary"
            f"{': ' + detail if detail else ''}; expected one of the supported ops "
            f"(see napbench.conversion.vocab), or pass allow_unknown=True to keep it as 'unknown'"
        )
        super().__init__(msg)


class ConversionError(NapbenchError, RuntimeError):
    """A model could not be converted (trace failed, unreadable file, ...)."""


class SchemaError(NapbenchError, ValueError):
    """A Parquet file does not follow the napbench schema."""


class VersionMismatchError(NapbenchError, ValueError):
    """Stored data or a checkpoint was made with another vocabulary or converter version."""


class UnknownNameError(NapbenchError, KeyError):
    """A registry lookup failed; the message lists the valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} {name!r}; expected one of: {', '.join(sorted(valid))}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class MirrorError(NapbenchError, FileNotFoundError):
    """The upstream data mirror is missing, incomplete or corrupt."""


class NoLabelsError(NapbenchError, ValueError):
    """A family has no labels reachable here, but an operation needs them."""


class InvalidArgumentError(NapbenchError, ValueError):
    """An argument has the wrong length, shape or values (NaN/inf, constant, out of range)."""


class NumericalError(NapbenchError, ArithmeticError):
    """A computation gave a non-finite or undefined value that would otherwise come back as NaN/inf."""


class OutputPathError(NapbenchError, OSError):
    """An output path cannot be written safely (a folder, someone else's file, unwritable)."""

    def __str__(self) -> str:  # OSError would otherwise format errno-style
        return str(self.args[0])


class CheckpointError(NapbenchError, FileNotFoundError):
    """A checkpoint folder is missing, incomplete, corrupt or does not match its config."""


class ConfigError(NapbenchError, ValueError):
    """``params.yaml`` (or a config value) is missing, malformed or inconsistent."""


class UpstreamError(MirrorError):
    """An upstream label table could not be fetched, or its sha256 differs from the pin."""


class HubError(NapbenchError, ConnectionError):
    """Publishing to or loading from the Hugging Face Hub failed (unreachable, 401, 5xx, bad content)."""
