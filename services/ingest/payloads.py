"""The request bodies ingest takes, as strict pydantic models.

Every handler validates its body through ``body.read_model``/``body.validate`` with one of
these (or a message model), so a field of the wrong JSON type is a 422 naming the field
wherever it is sent, and ``/openapi.json`` describes the bodies from the same models.
Strict: no coercion (``"3"`` is not a number, ``1`` is not a string or a boolean). Unknown
fields are ignored, as the senders (GitHub, Argo CD, external deploy systems) add fields
over time. Only the parts of GitHub's deliveries that ingest reads are modelled.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class PromotionResult(Body):
    """``POST …/promotions/{id}/result``: how a webhook promotion ended."""

    status: Literal["succeeded", "failed"]
    detail: str | None = Field(default=None, max_length=2000)


class NoFields(Body):
    """``POST …/waves/{w}/approve|hold|release``: an optional body; no field is read."""


class Rollback(Body):
    """``POST …/waves/{w}/rollback``: where the wave goes back to."""

    to: str = Field(
        pattern=r"^(previous|[a-f0-9]{7,64})$",
        description="'previous', or the app sha of an image set the wave ran",
    )
    hold: bool = Field(
        default=False,
        description="also hold the wave, in the same request (`waveline rollback --hold`)",
    )


class ArgoReport(Body):
    """What the argocd-notifications template in ``deploy/argocd/`` posts (the same limits
    as ``DeployReported``, checked before anything else)."""

    app: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")
    revision: str = Field(
        pattern=r"^([a-f0-9]{40})?$",
        description="'' for a multi-source Application (ignored)",
    )
    phase: str = Field(default="", max_length=64)
    health: str = Field(default="", max_length=64)
    sync: str = Field(default="", max_length=64)


class GitHubBranch(Body):
    name: str


class GitHubRepository(Body):
    full_name: str


class GitHubUser(Body):
    """The account that caused a delivery; for a commit status, the one that created it
    (an App's installation token shows as ``<slug>[bot]``, type ``Bot``)."""

    login: str
    type: str | None = None


class GitHubDelivery(Body):
    """The part every acted-on GitHub delivery shares."""

    repository: GitHubRepository
    sender: GitHubUser | None = None


class StatusDelivery(GitHubDelivery):
    sha: str
    context: str
    state: Literal["pending", "success", "failure", "error"]
    branches: list[GitHubBranch] = []


class GitHubSuiteRef(Body):
    head_branch: str | None = None


class GitHubApp(Body):
    slug: str | None = None
    name: str | None = None


class GitHubCheckRun(Body):
    name: str
    head_sha: str
    status: str | None = None
    conclusion: str | None = None
    head_branch: str | None = None
    check_suite: GitHubSuiteRef | None = None
    app: GitHubApp | None = None


class CheckRunDelivery(GitHubDelivery):
    check_run: GitHubCheckRun


class GitHubCheckSuite(Body):
    head_sha: str
    status: str | None = None
    conclusion: str | None = None
    head_branch: str | None = None
    app: GitHubApp | None = None


class CheckSuiteDelivery(GitHubDelivery):
    check_suite: GitHubCheckSuite


class GitHubRef(Body):
    ref: str = ""
    sha: str | None = None


class GitHubPullRequest(Body):
    number: int | None = None
    state: str = ""
    merged: bool | None = None
    head: GitHubRef = GitHubRef()
    base: GitHubRef = GitHubRef()
    merge_commit_sha: str | None = None
    html_url: str | None = None


class PullRequestDelivery(GitHubDelivery):
    action: str | None = None
    number: int | None = None
    pull_request: GitHubPullRequest | None = None
