"""The Drone/Woodpecker plugin never writes a secret into a commit message: only the
non-secret CI variables of ``SAFE_VARIABLES`` expand, and a message that would still hold a
secret's value is refused with nothing pushed. Against a real bare git remote."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import branch_log
from waveline.cli.ops import CliError
from waveline.cli.plugin import SAFE_VARIABLES, _without_userinfo, commit_message
from waveline.cli.plugin import run as plugin_run
from waveline.devstack.demo import seed_repo

ACCESS_TOKEN = "plugin-access-token-31415926"
NETRC_PASSWORD = "netrc-clone-password-27182818"
DOCKER_PASSWORD = "docker-registry-password-1618"
SHA = "0123456789abcdef0123456789abcdef01234567"


def _env(url: str, message: str, **extra: str) -> dict[str, str]:
    return {
        "PLUGIN_GIT_REPO": url,
        "PLUGIN_BRANCH": "master",
        "PLUGIN_IMAGE_TAG": "v1.2.3",
        "PLUGIN_DESTINATION_FILE": "deployed_tags/prod_image_tag",
        "PLUGIN_ACCESS_TOKEN": ACCESS_TOKEN,
        "PLUGIN_COMMIT_MESSAGE": message,
        "DRONE_NETRC_PASSWORD": NETRC_PASSWORD,
        "CI_NETRC_PASSWORD": NETRC_PASSWORD,
        "DOCKER_PASSWORD": DOCKER_PASSWORD,
        "DRONE_COMMIT_SHA": SHA,
        "CI_PIPELINE_NUMBER": "42",
        **extra,
    }


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    path = tmp_path / "infra.git"
    seed_repo(path)
    return path


def test_secret_variables_are_not_expanded_into_the_commit(bare: Path) -> None:
    message = (
        "deploy $PLUGIN_IMAGE_TAG from ${DRONE_COMMIT_SHA} (#$CI_PIPELINE_NUMBER)"
        " token=$PLUGIN_ACCESS_TOKEN netrc=${DRONE_NETRC_PASSWORD} ci=$CI_NETRC_PASSWORD"
        " docker=$DOCKER_PASSWORD repo=$PLUGIN_GIT_REPO"
    )
    summary = plugin_run(_env(bare.as_uri(), message))
    assert "committed v1.2.3" in summary
    head = branch_log(str(bare), "master")[0]
    for secret in (ACCESS_TOKEN, NETRC_PASSWORD, DOCKER_PASSWORD, bare.as_uri()):
        assert secret not in head.message
    assert head.message == (
        f"deploy v1.2.3 from {SHA} (#42) token=$PLUGIN_ACCESS_TOKEN"
        " netrc=${DRONE_NETRC_PASSWORD} ci=$CI_NETRC_PASSWORD docker=$DOCKER_PASSWORD"
        " repo=$PLUGIN_GIT_REPO\n"
    )


@pytest.mark.parametrize(
    "extra",
    [
        # The CI system substituted the token into the setting before the plugin ran.
        {"PLUGIN_COMMIT_MESSAGE": f"deploy with {ACCESS_TOKEN}"},
        # A safe variable that happens to hold a secret's value.
        {"DRONE_COMMIT_MESSAGE": f"oops {NETRC_PASSWORD}"},
    ],
)
def test_a_message_holding_a_secret_value_is_refused(bare: Path, extra: dict[str, str]) -> None:
    before = branch_log(str(bare), "master")
    env = _env(bare.as_uri(), "deploy $DRONE_COMMIT_MESSAGE", **extra)
    with pytest.raises(CliError, match="would contain the value of") as refused:
        plugin_run(env)
    for secret in (ACCESS_TOKEN, NETRC_PASSWORD):
        assert secret not in str(refused.value)
    assert [c.id for c in branch_log(str(bare), "master")] == [c.id for c in before]


def test_the_allow_list_holds_no_secret_looking_name() -> None:
    for name in SAFE_VARIABLES:
        assert not any(w in name for w in ("TOKEN", "SECRET", "PASSWORD", "NETRC", "KEY"))
    assert "PLUGIN_GIT_REPO" not in SAFE_VARIABLES


def test_default_message_names_the_tag_and_file() -> None:
    env = _env("file:///x", "")
    assert commit_message(env) == (
        "[Auto] Automated commit to write v1.2.3 to deployed_tags/prod_image_tag"
    )


def test_a_userinfo_url_is_not_quoted_in_errors() -> None:
    assert _without_userinfo("https://ci:tok-1234@git.example.com/o/r.git") == (
        "https://git.example.com/o/r.git"
    )
    assert _without_userinfo("file:///srv/r.git") == "file:///srv/r.git"
