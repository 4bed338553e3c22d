"""Code forge clients (GitHub today): pull requests for promotion by pull request."""

from waveline.shared.forge.base import (
    MERGE_METHODS,
    Forge,
    ForgeError,
    HeadChanged,
    PullRequest,
    PullRequestNotMergeable,
)
from waveline.shared.forge.github import GitHubForge

__all__ = [
    "MERGE_METHODS",
    "Forge",
    "ForgeError",
    "GitHubForge",
    "HeadChanged",
    "PullRequest",
    "PullRequestNotMergeable",
]
