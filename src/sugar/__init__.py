"""Sugar: one multimodal LLM that generates, embeds interleaved image-text documents and retrieves."""

__version__ = "0.1.0"
