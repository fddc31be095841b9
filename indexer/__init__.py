"""Offline pipeline (feed -> embeddings -> FAISS + SQLite + manifest) and the read-only index store."""
