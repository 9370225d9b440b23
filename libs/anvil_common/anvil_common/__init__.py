"""What more than one Anvil service needs. Import submodules directly (``anvil_common.db``...)."""
