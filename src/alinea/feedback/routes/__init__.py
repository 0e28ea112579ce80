"""HTTP routes: `api` (the JSON API under /api/v1), `pages` (server-rendered HTML), `deps` (shared dependencies)."""
