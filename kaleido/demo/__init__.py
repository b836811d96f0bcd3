"""`run.py --demo`: a stand-in ML service and simulated users, so every stream and table fills."""

from __future__ import annotations

from kaleido.demo.ml_standin import MlStandin
from kaleido.demo.traffic import Traffic
from kaleido.posts import Posts
from kaleido.profiles import Profiles
from kaleido.service import Service


async def start_demo(service: Service) -> None:
    """Start both demo actors under the service's supervisor."""
    backends, stopping = service.backends, service.supervisor.stopping
    settings = backends.settings
    standin = MlStandin(
        backends.redis,
        backends.keys,
        stopping,
        backends.postgres,
        image_dim=settings.image_embedding_dim,
        face_dim=settings.face_embedding_dim,
    )
    traffic = Traffic(
        Posts(backends.postgres, service.relay.kick),
        Profiles(backends.postgres, service.relay.kick),
        service.tracker,
        stopping,
    )
    await service.supervisor.start("demo-ml-standin", standin.run)
    await service.supervisor.start("demo-traffic", traffic.run)
