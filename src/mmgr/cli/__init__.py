"""The `mmgr` command line: one module per stage."""
