"""LLM backends: llama.cpp for GGUF files, an OpenAI-compatible HTTP client, and a fake for tests."""
