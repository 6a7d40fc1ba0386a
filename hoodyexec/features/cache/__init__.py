"""``cache/clear``: drop compiled scripts (and their module state) in every worker."""
