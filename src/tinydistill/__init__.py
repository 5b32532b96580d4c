"""tinydistill: distil large teacher LLMs into small task-specialised students."""

__version__ = "0.1.0"
