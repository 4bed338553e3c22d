"""Code forge clients (GitHub, GitLab): pull requests for promotion by pull request.

``select.make_forge`` picks the client by the config's ``kind``.
"""

from waveline.shared.forge.base import (
    MERGE_METHODS,
    Forge,
    ForgeError,
    HeadChanged,
    PullRequest,
    PullRequestNotMergeable,
)
from waveline.shared.forge.github import GitHubForge
from waveline.shared.forge.gitlab import GitLabForge

__all__ = [
    "MERGE_METHODS",
    "Forge",
    "ForgeError",
    "GitHubForge",
    "GitLabForge",
    "HeadChanged",
    "PullRequest",
    "PullRequestNotMergeable",
]
