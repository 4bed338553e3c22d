"""The parts of GitLab's webhook payloads ingest reads (``Merge Request Hook``,
``Pipeline Hook``, ``Job Hook``), as strict pydantic models like ``payloads.py``'s: no
coercion, unknown fields ignored (GitLab adds fields over time)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from waveline.services.ingest.payloads import Body


class GitLabProject(Body):
    path_with_namespace: str = Field(min_length=1, max_length=1000)


class GitLabRepository(Body):
    """A job event's repository; ``homepage`` is the project's page (older GitLab versions
    send no ``project`` object with a job event)."""

    homepage: str | None = None


class GitLabCommit(Body):
    id: str


class MergeRequestAttributes(Body):
    iid: int = Field(ge=1)
    action: str | None = Field(default=None, max_length=64)
    state: str = Field(max_length=64, description="opened, closed, locked or merged")
    source_branch: str
    target_branch: str
    last_commit: GitLabCommit
    merge_commit_sha: str | None = None
    url: str | None = None


class MergeRequestHook(Body):
    """``X-Gitlab-Event: Merge Request Hook``."""

    object_kind: Literal["merge_request"]
    project: GitLabProject
    object_attributes: MergeRequestAttributes


class PipelineAttributes(Body):
    sha: str
    status: str = Field(max_length=64)
    ref: str | None = None
    tag: bool = False
    name: str | None = Field(default=None, max_length=200)


class PipelineBuild(Body):
    """One job of the pipeline (a CI job, or an external commit status)."""

    name: str = Field(min_length=1, max_length=255)
    status: str = Field(max_length=64)


class PipelineMergeRequest(Body):
    source_branch: str | None = None


class PipelineHook(Body):
    """``X-Gitlab-Event: Pipeline Hook``."""

    object_kind: Literal["pipeline"]
    project: GitLabProject
    object_attributes: PipelineAttributes
    merge_request: PipelineMergeRequest | None = None
    builds: list[PipelineBuild] = Field(default=[], max_length=1000)


class JobHook(Body):
    """``X-Gitlab-Event: Job Hook`` (``object_kind`` is ``build``)."""

    object_kind: Literal["build"]
    sha: str
    ref: str | None = None
    tag: bool = False
    build_name: str = Field(min_length=1, max_length=255)
    build_status: str = Field(max_length=64)
    project: GitLabProject | None = None
    repository: GitLabRepository | None = None
