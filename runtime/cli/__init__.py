"""The ``certmodel`` command line: local mode against a folder, the Job and pod entry points."""
