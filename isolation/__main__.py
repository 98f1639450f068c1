from isolation.cli import entry

entry()
