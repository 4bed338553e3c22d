"""Which model travels on which topic (docs/architecture.md, Topics). The schema files are
generated from this."""

from __future__ import annotations

from pydantic import BaseModel

from waveline.shared.models.checks import CheckReported
from waveline.shared.models.deploys import DeployReported
from waveline.shared.models.dlq import DeadLetter
from waveline.shared.models.git import (
    AlignAuto,
    Evict,
    FastForward,
    GitEvent,
    IntroduceImages,
    PromoteWave,
    RollbackWave,
)
from waveline.shared.models.images import ImageSetAnnounced
from waveline.shared.models.operator import OperatorCommand
from waveline.shared.models.promotions import PromotionEvent
from waveline.shared.models.pulls import PullRequestReported
from waveline.shared.models.waves import WaveStatus

TOPIC_MODELS: dict[str, tuple[type[BaseModel], ...]] = {
    "waveline.images": (ImageSetAnnounced,),
    "waveline.checks": (CheckReported,),
    "waveline.deploys": (DeployReported,),
    "waveline.operator": (OperatorCommand,),
    "waveline.git.commands": (
        IntroduceImages,
        PromoteWave,
        FastForward,
        Evict,
        RollbackWave,
        AlignAuto,
    ),
    "waveline.git.events": (GitEvent,),
    "waveline.waves": (WaveStatus,),
    "waveline.promotions": (PromotionEvent,),
    "waveline.pulls": (PullRequestReported,),
    "waveline.dlq": (DeadLetter,),
}
