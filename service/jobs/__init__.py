"""Jobs: model and state machine, stores, engine, watch hub."""
