"""Header-only validation of Hugging Face model folders."""
