"""The fleet view: which client holds which revision of which environment, across every gateway
replica (recorder.py writes it in batches, endpoints.py serves it, POST /v1/acks feeds it)."""
