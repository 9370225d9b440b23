from anvil_bundle_worker.models import metadata
from anvil_common.migrations import run_env

run_env(metadata)
