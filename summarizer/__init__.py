"""issue-summarizer: short, accurate titles for GitHub issues."""

import os

__version__ = "0.1.0"

# ONNX Runtime (1.29 and later) sends usage telemetry to Microsoft from every process that runs
# a model, and keeps a device id under ~/.cache, unless this is set before onnxruntime is
# imported. The product talks to no host its user did not configure, and every process it
# starts (CLI, web app, Seldon, MLServer) imports this package before the engine. Setting the
# variable to 0 is how a user opts in.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
