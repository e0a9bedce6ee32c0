"""How a database is configured, started, killed and logged: the squall node and Apache ZooKeeper."""
