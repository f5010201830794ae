"""The comparison report of `mmgr bench`: runs -> summaries (`runs`) -> plots (`figures`) -> report.json, Markdown
and self-contained HTML (`document`), orchestrated by `bench`."""
