"""The human-feedback web app (`alinea serve`): annotators compare, rank, rate, write and chat; admins assign,
check quality and export.

Layout: `settings.py` (the app's configuration), `db.py` (engine, sessions, migrations), `models.py` (tables),
`tasks.py` (task types and the answers each accepts), `crud.py` (users, projects, items), `assignment.py` (leases,
skips, judgments), `quality.py` (annotator statistics and agreement), `export.py` (JSONL and TRL rows),
`security.py` (passwords, sessions, CSRF, API tokens), `i18n/` (UI text catalogs), `routes/` (the JSON API under
/api/v1 and the HTML pages), `app.py` (`create_app(settings)`). This package imports `alinea.data`, never training
code: a live chat model is handed to it as a plain sampling function (see `chat.py`).
"""
