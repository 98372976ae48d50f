"""Click commands of the core library, registered as `mutapub.commands` entry points."""
