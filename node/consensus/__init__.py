"""Leader election and log replication as a pure state machine (step/tick/propose/ready/advance)."""
