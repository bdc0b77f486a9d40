"""LivePortrait orchestrator: asyncio gRPC server that runs the animation pipeline against Triton."""
