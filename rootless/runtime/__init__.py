"""Container runtime: id mapping, mount tables, users, and running processes."""
