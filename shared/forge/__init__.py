"""Code forge clients (GitHub, GitLab): pull requests for promotion by pull request.

``select.make_forge`` picks the client by the config's ``kind``. A GitHub forge may
authenticate as a GitHub App (``github_app``: installation tokens, minted and renewed).
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
from waveline.shared.forge.github_app import AppTokens, GitHubAppError, StaticToken, TokenSource
from waveline.shared.forge.gitlab import GitLabForge

__all__ = [
    "MERGE_METHODS",
    "AppTokens",
    "Forge",
    "ForgeError",
    "GitHubAppError",
    "GitHubForge",
    "GitLabForge",
    "HeadChanged",
    "PullRequest",
    "PullRequestNotMergeable",
    "StaticToken",
    "TokenSource",
]
