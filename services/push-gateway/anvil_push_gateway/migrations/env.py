from anvil_common.migrations import run_env
from anvil_push_gateway.models import metadata

run_env(metadata)
