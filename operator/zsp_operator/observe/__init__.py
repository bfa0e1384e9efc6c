"""What the operator tells the world about each transition: audit record, Event, metric."""
