"""The exception tree of cbr-agent, in one place.

Every error a user can see derives from :class:`CbrAgentError`. Its ``str()`` is a one-line message
that says what is wrong and what to do; it never contains a secret. The CLI maps each class to an exit
code in :mod:`cbr_agent.cli.exitcodes`; nothing else in the package knows about exit codes.

    CbrAgentError
    ├── UsageError                 bad command line
    ├── ConfigError                bad or unreadable configuration file, key or value
    ├── StateError                 the state dir cannot be read or written
    ├── ApiError                   the control plane answered with an error body
    │   ├── AuthError              401 / 403: credentials refused or project mismatch
    │   └── NotFoundError          404: unknown agent (or other object)
    ├── ControlPlaneUnavailable    no answer: connection refused, timeout, 5xx after retries
    │   └── ApiUnavailable         429 / 5xx after retries: an ApiError too (status, error_code)
    ├── RepositoryError            the data plane: repository missing, damaged or unusable
    │   ├── RepositoryNotFound
    │   ├── RepositoryExists
    │   ├── UnsupportedLocation    a repository URL of a kind this build cannot use (also a UsageError)
    │   ├── WrongPassword
    │   ├── RepositoryLocked
    │   ├── RepositoryAccessDenied the storage refused the credentials or the action (append-only)
    │   ├── RepositoryUnavailable  the storage did not answer usefully (after retries)
    │   └── IntegrityError         an object failed authentication or its hash
    ├── BackupError                a backup stopped (no snapshot was written)
    ├── RestoreError               a restore could not complete
    └── Cancelled                  stopped by a signal or by the user
"""

from __future__ import annotations


class CbrAgentError(Exception):
    """Base of every error meant for the user."""

    #: a short hint on what to do, appended to the message when the raiser gives none
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        if self.hint and self.hint not in self.message:
            return f"{self.message} ({self.hint})"
        return self.message


class UsageError(CbrAgentError):
    """The command line is wrong."""

    hint = "see 'cbr-agent --help'"


class ConfigError(CbrAgentError):
    """A configuration file, key or value is wrong; the agent refuses to start half-configured."""


class StateError(CbrAgentError):
    """The state directory cannot be used (read-only, full, wrong owner)."""


class ApiError(CbrAgentError):
    """The control plane answered with an error body ``{"error_code", "error_msg"}``."""

    def __init__(
        self,
        status: int,
        error_code: str,
        error_msg: str,
        *,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(f"control plane answered {status} {error_code}: {error_msg}", hint=hint)
        self.status = status
        self.error_code = error_code
        self.error_msg = error_msg
        self.request_id = request_id

    def to_body(self) -> dict[str, str]:
        return {"error_code": self.error_code, "error_msg": self.error_msg}


class AuthError(ApiError):
    """The control plane refused the credentials (401) or the project (403)."""

    hint = "check ak/sk or token and project_id in the configuration"


class NotFoundError(ApiError):
    """The control plane does not know the object (404)."""


class ControlPlaneUnavailable(CbrAgentError):
    """The control plane did not answer usefully: refused, timed out, or 5xx after retries."""

    hint = "check 'endpoint' and the network; the daemon keeps retrying on its own"


class ApiUnavailable(ApiError, ControlPlaneUnavailable):
    """The control plane answered 429 or 5xx (after the client's retries): an :class:`ApiError` with
    its status and ``error_code``, and also "unavailable" for callers and exit codes."""

    hint = "the control plane is overloaded or failing; try again later, the daemon retries on its own"


class RepositoryError(CbrAgentError):
    """The backup repository cannot be used."""


class RepositoryNotFound(RepositoryError):
    hint = "create it with 'cbr-agent init' or check the 'repository' setting"


class RepositoryExists(RepositoryError):
    hint = "choose another location, or use the existing repository"


class UnsupportedLocation(RepositoryError, UsageError):
    """A repository URL whose scheme this build has no backend for: a usage error (exit 2), the
    same whether it came from a flag or from the config."""

    hint = "use a path, file:///... or s3://BUCKET/PREFIX"


class WrongPassword(RepositoryError):
    hint = "check CBR_AGENT_PASSWORD or the password file"


class RepositoryLocked(RepositoryError):
    hint = "another backup or prune is running; a lock of a crashed run expires by itself"


class RepositoryAccessDenied(RepositoryError):
    hint = ("check the storage credentials; append-only credentials may back up and restore but not "
            "forget or prune")


class RepositoryUnavailable(RepositoryError):
    hint = "check the storage endpoint and the network, then try again; a backup reuses what it uploaded"


class IntegrityError(RepositoryError):
    hint = "run 'cbr-agent check --read-data' to find every damaged object"


class BackupError(CbrAgentError):
    """A backup could not complete; no snapshot was written."""


class RestoreError(CbrAgentError):
    """A restore could not complete."""


class Cancelled(CbrAgentError):
    """Stopped by a signal or by the user."""
