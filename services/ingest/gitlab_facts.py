"""What a GitLab webhook delivery reports, as the messages Waveline publishes: pure rules,
no I/O (``gitlab.py`` authenticates, reads and publishes).

- ``Merge Request Hook`` → ``PullRequestReported`` on ``waveline.pulls``, so the notifier
  follows a promotion merge request as it follows a GitHub pull request (merged → done,
  closed unmerged → cancelled). ``number`` is the merge request's ``iid``.
- ``Pipeline Hook`` → ``CheckReported``: the pipeline itself as the context ``pipeline``
  (``pipeline:<name>`` for a named pipeline), and each of its jobs whose name is a required
  check of the repo (a CI job, or an external commit status, which GitLab shows as a job).
- ``Job Hook`` → ``CheckReported`` for the job (context: the job's name).

GitLab's statuses map to check states: ``success`` is green; ``failed``, ``canceled`` and
``skipped`` are red (a required job that did not run did not pass); every other status
(created, pending, running, manual, scheduled...) is pending. Event ids are derived from the
meaning exactly as for GitHub's deliveries, so the same fact is one event whichever way it
came. Who reported a GitLab check is not recorded: the webhook token is the trust.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from waveline.services.ingest.body import validate
from waveline.services.ingest.gitlab_payloads import JobHook, MergeRequestHook, PipelineHook
from waveline.shared.config import WavelineConfig
from waveline.shared.models.checks import CheckReported, CheckState
from waveline.shared.models.pulls import PullRequestReported

# The namespace of webhooks.py's event ids: one fact, one id, whichever forge route.
NAMESPACE = uuid.UUID("8f6d2c1e-52a4-4d7b-9b3e-1d0c8e7a6f55")
EVENTS = ("Merge Request Hook", "Pipeline Hook", "Job Hook")
_STATES: Mapping[str, CheckState] = {
    "success": "success",
    "failed": "failure",
    "canceled": "error",
    "skipped": "failure",
}
# Merge request actions that change what a promotion merge request means to Waveline
# (approvals and the like do not).
MR_ACTIONS = frozenset({"open", "reopen", "update", "merge", "close"})
PIPELINE_CONTEXT = "pipeline"

Message = CheckReported | PullRequestReported


def check_state(status: str) -> CheckState:
    """A GitLab pipeline or job status as a check state."""
    return _STATES.get(status, "pending")


def pipeline_context(name: str | None) -> str:
    return f"{PIPELINE_CONTEXT}:{name}" if name else PIPELINE_CONTEXT


def messages(
    config: WavelineConfig, event: str, doc: dict[str, Any], now: datetime
) -> list[Message]:
    """The messages a delivery of ``X-Gitlab-Event: event`` reports; [] for one Waveline
    ignores (another event, another project, an approval). A body that is not the event's
    shape is a 422 (``body.validate``)."""
    if event == "Merge Request Hook":
        return _merge_request(config, validate(MergeRequestHook, doc), now)
    if event == "Pipeline Hook":
        return _pipeline(config, validate(PipelineHook, doc), now)
    if event == "Job Hook":
        return _job(config, validate(JobHook, doc), now)
    return []


def _merge_request(config: WavelineConfig, hook: MergeRequestHook, now: datetime) -> list[Message]:
    repo = config.repo_by_full_name(hook.project.path_with_namespace)
    mr = hook.object_attributes
    if repo is None or mr.action not in MR_ACTIONS:
        return []
    merged = mr.state == "merged"
    head_sha = mr.last_commit.id
    meaning = f"pr/{repo}/{mr.iid}/{mr.action}/{head_sha}/{merged}"
    report = validate(
        PullRequestReported,
        {
            "event_id": uuid.uuid5(NAMESPACE, meaning),
            "repo": repo,
            "number": mr.iid,
            "action": mr.action,
            "state": "closed" if mr.state in ("closed", "merged") else "open",
            "merged": merged,
            "head_ref": mr.source_branch,
            "head_sha": head_sha,
            "base_ref": mr.target_branch,
            # A fast-forward merge makes no merge commit: the head itself landed.
            "merge_sha": (mr.merge_commit_sha or head_sha) if merged else None,
            "url": mr.url,
            "reported_at": now,
        },
    )
    return [report]


def _pipeline(config: WavelineConfig, hook: PipelineHook, now: datetime) -> list[Message]:
    repo = config.repo_by_full_name(hook.project.path_with_namespace)
    if repo is None:
        return []
    attrs = hook.object_attributes
    source = hook.merge_request.source_branch if hook.merge_request else None
    branch = source or (None if attrs.tag else attrs.ref)
    branches = (branch,) if branch else ()
    facts = [(pipeline_context(attrs.name), check_state(attrs.status), "check_suite")]
    required = set(config.repos[repo].required_check_names())
    # Only the jobs a required check names: a pipeline may hold hundreds of jobs.
    facts += [
        (b.name, check_state(b.status), "check_run") for b in hook.builds if b.name in required
    ]
    return [_check(repo, attrs.sha, c, s, kind=k, branches=branches, now=now) for c, s, k in facts]


def _job(config: WavelineConfig, hook: JobHook, now: datetime) -> list[Message]:
    path = hook.project.path_with_namespace if hook.project else _homepage_path(hook)
    repo = config.repo_by_full_name(path) if path else None
    if repo is None:
        return []
    branches = (hook.ref,) if hook.ref and not hook.tag else ()
    state = check_state(hook.build_status)
    return [
        _check(repo, hook.sha, hook.build_name, state, kind="check_run", branches=branches, now=now)
    ]


def _homepage_path(hook: JobHook) -> str | None:
    """The project path from the repository's page, for job events without ``project``."""
    homepage = hook.repository.homepage if hook.repository else None
    return urlsplit(homepage).path.strip("/") or None if homepage else None


def _check(
    repo: str,
    sha: str,
    context: str,
    state: CheckState,
    *,
    kind: str,
    branches: tuple[str, ...],
    now: datetime,
) -> CheckReported:
    meaning = f"check/{repo}/{sha}/{context}/{state}"
    return validate(
        CheckReported,
        {
            "event_id": uuid.uuid5(NAMESPACE, meaning),
            "repo": repo,
            "sha": sha,
            "context": context,
            "state": state,
            # A pipeline is GitLab's suite of checks, a job one check run.
            "kind": kind,
            "branches": branches,
            "reported_at": now,
        },
    )
