"""After training: task checks on answers, the eval report, the model card."""
