"""Data sources: the generated corpus, local JSON lines files and the Hugging Face hub."""
