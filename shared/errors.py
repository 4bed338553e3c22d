"""Error types that say how to handle them.

Every error raised by Waveline code carries ``retriable``: the handler boundary retries a
retriable error (from fresh state) and dead-letters a permanent one. Mirrors aiokafka's
``KafkaError.retriable`` so both kinds can be treated alike at the boundary.
"""

from __future__ import annotations


class WavelineError(Exception):
    """Base class. ``retriable`` says whether trying again may succeed."""

    retriable: bool = False
    code: str = "error"

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(WavelineError):
    """The config file or environment is invalid; the process must not start."""

    code = "invalid_config"


class InvalidMessage(WavelineError):
    """A message failed validation. Permanent: it goes to the dead-letter topic."""

    code = "invalid_message"


class UnknownPipeline(WavelineError):
    """A message names a pipeline the config does not define. Permanent."""

    code = "unknown_pipeline"


class PreconditionFailed(WavelineError):
    """A git command's precondition does not hold (services/git_writer/apply.py). Permanent
    for that command."""

    code = "precondition_failed"


class GitFailure(WavelineError):
    """A git operation failed (network, rejected push, lease mismatch). Retriable by default."""

    code = "git_failure"
    retriable = True


class PushRejected(GitFailure):
    """The remote refused a reference update or the lease did not match."""

    code = "push_rejected"


class BrokerUnavailable(WavelineError):
    """Kafka did not acknowledge a publish in time."""

    code = "broker_unavailable"
    retriable = True


class GitUnreachable(GitFailure):
    """The git remote did not answer (refused, reset, timed out, name not resolved): an
    outage. The git-writer waits it out with backoff instead of dead-lettering commands."""

    code = "git_unreachable"


class PublishRefused(WavelineError):
    """Kafka refused a record for what it is (too large for the producer or the topic), not
    for an outage: publishing it again cannot succeed. Permanent."""

    code = "publish_refused"


class KafkaAccessRefused(ConfigError):
    """Kafka answered but refused this client: wrong SASL credentials or mechanism, or a
    broker certificate the configured CA does not trust (or naming another host). Permanent:
    trying again with the same settings cannot succeed, so it is never waited out as an
    outage; the process must not start."""

    code = "kafka_access_refused"


class UnusableFile(PreconditionFailed):
    """A config-repo file Waveline cannot use as it stands: not UTF-8, over the size cap,
    nested too deep, duplicate keys, or a value of the wrong type where a layout reads or
    writes. Permanent for the command that met it (rejected, naming the file, the place in
    it and why); the next command and every other repository go on."""

    code = "unusable_file"

    def __init__(self, file: str, where: str, reason: str) -> None:
        # Keys and values quoted here come from the file: keep an event carrying this small.
        self.file = file
        self.where = _clip(where)
        self.reason = _clip(reason)
        super().__init__(f"{file}: {self.where}: {self.reason}" if where else f"{file}: {reason}")

    def __reduce__(self) -> tuple[type[UnusableFile], tuple[str, str, str]]:
        # Crosses the repo process's socket as a pickle; the default would call
        # __init__ with the message alone.
        return (type(self), (self.file, self.where, self.reason))


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
