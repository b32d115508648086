"""Local services for development, tests and the demo (`hotfeed services up|down|status`)."""
