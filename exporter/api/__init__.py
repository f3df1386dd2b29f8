"""HTTP endpoints as Flask blueprints: thin, each delegating to the runtime's components."""
