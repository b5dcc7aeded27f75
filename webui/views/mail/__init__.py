"""Mail: receiving, reading, composing, the outbound queue and system mail."""
