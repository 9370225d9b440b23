from anvil_common.migrations import run_env
from anvil_registry.models import metadata

run_env(metadata)
