"""The teacher: its training and what it hands to students (cached logits, summaries)."""
