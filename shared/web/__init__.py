"""The web page and its JSON API, served by the stateless `functions/web.py` function.

Server-rendered (Jinja templates in `templates/`), no build step, a few lines of plain
JavaScript to follow running runs and logs. `pages.py` renders, `api.py` answers JSON,
`actions.py` is what both do to the system (cancel, re-run, rules, repositories, dead letters),
`graph.py` lays out a run's DAG (pure), `access.py` guards it all, `openapi.py` describes the API.
"""
