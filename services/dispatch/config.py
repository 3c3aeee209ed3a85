"""dispatch's settings and the runtime every dispatch process builds once."""

from pathlib import Path

from services.dispatch.models import Base, messaging
from shared.runtime import RuntimeFactory

SERVICE = "dispatch"
MIGRATIONS = Path(__file__).parent / "migrations"

_factory = RuntimeFactory(
    SERVICE, metadata=Base.metadata, messaging=messaging, migrations=MIGRATIONS
)
load_settings = _factory.load_settings
build_runtime = _factory.build
configure = _factory.configure
runtime = _factory.runtime
