"""modeldrop: ship custom-weight LLMs from a bucket to Vertex AI Model Garden."""

__version__ = "0.1.0"
