"""Small leaf helpers shared across umt (nothing of umt imported, no torch)."""
