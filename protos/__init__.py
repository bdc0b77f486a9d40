"""gRPC API of the LivePortrait service (package ``liveportrait.v1``); generated code is committed, see generate.py."""
