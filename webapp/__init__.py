"""The issue-summarizer web app: paste an issue (or its GitHub URL), get a title, say if it is good.

`create_app()` in `webapp.app` builds it; `python -m webapp` serves it with waitress.
"""
