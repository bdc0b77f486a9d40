"""LivePortrait networks, official checkpoint loading, ONNX export and the Triton model repository generator."""
